"""The results table of runs: rows by recipe, the statistics in them, what the curves say, and a
sweep's progress (sweeps of the gpus launcher are covered in test_launcher)."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock
from omegaconf import OmegaConf
from scipy import stats

from cnnlab.config.settings import SCOPE, settings
from cnnlab.errors import ConfigError
from cnnlab.files import LOCK, epoch_series
from cnnlab.results.diagnosis import Thresholds
from cnnlab.results.progress import PLAN, Progress
from cnnlab.results.report import Options, collect, rows, write_report
from cnnlab.results.significance import seeds_needed
from cnnlab.results.table import columns
from cnnlab.run.train import run

from conftest import FAST, ROOT, TINY_DATA

RECIPE = {
    "optimizer.lr": 0.1,
    "activation.name": "relu",
    "norm.name": "bn",
    "trainer.max_epochs": 3,
}


def write_job(
    where: Path,
    settings: dict,
    choices: dict,
    acc: float,
    seed: int,
    reference: dict | None = None,
    curves: dict[str, list[float]] | None = None,
) -> Path:
    """A finished job as a run leaves it: .hydra/, metrics.json and, if given, its CSV log."""
    (where / ".hydra").mkdir(parents=True)
    (where / ".hydra" / "overrides.yaml").write_text("[]\n")
    record = {
        "status": "finished",
        "best_val_acc": acc,
        "test_acc": acc - 0.01,
        "epochs": 3,
        "choices": choices,
        "seed": seed,
        "settings": {**settings, "seed": seed},
        "settings_scope": SCOPE,
        "reference": reference,
    }
    (where / "metrics.json").write_text(json.dumps(record))
    if curves:
        (where / "csv").mkdir()
        epochs = len(next(iter(curves.values())))
        lines = ["epoch," + ",".join(curves)]
        lines += [f"{e}," + ",".join(str(v[e]) for v in curves.values()) for e in range(epochs)]
        (where / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    return where


ACCS = {  # (optimizer, activation): three seeds' best validation accuracy
    ("sgd", "elu"): [0.9167, 0.9141, 0.9188],
    ("sgd", "relu"): [0.9113, 0.9102, 0.9131],
    ("adam", "elu"): [0.905, 0.921, 0.912],
    ("adam", "relu"): [0.8902, 0.8911, 0.8890],
}
OVERFITTING = {  # a gap that opens: train accuracy runs away from validation's
    "train/acc": [0.5, 0.7, 0.9, 0.99],
    "val/acc": [0.5, 0.6, 0.62, 0.62],
    "train/loss": [1.5, 1.0, 0.5, 0.1],
    "val/loss": [1.5, 1.2, 1.2, 1.3],
}


@pytest.fixture
def two_sweeps(tmp_path) -> Path:
    """Two sweeps of activation=elu,relu x seed=1,2,3 under one parent, one with Adam and one
    with SGD (a fixed override each: neither sweep varies the optimizer)."""
    for optimizer, sweep in (("sgd", "a"), ("adam", "b")):
        for i, activation in enumerate(("elu", "relu")):
            for seed in (1, 2, 3):
                settings = {
                    **RECIPE,
                    "activation.name": activation,
                    "optimizer._target_": optimizer,
                }
                choices = {"optimizer": optimizer, "activation": activation, "model": "nin"}
                reference = {"test_acc": 0.9134, "source": "NIN lab report, Table 2"}
                curves = OVERFITTING if (optimizer, activation) == ("adam", "relu") else None
                job = tmp_path / "runs" / sweep / str(3 * i + seed - 1)
                acc = ACCS[optimizer, activation][seed - 1]
                write_job(job, settings, choices, acc, seed, reference if i == 0 else None, curves)
    return tmp_path / "runs"


def test_jobs_are_pooled_by_everything_that_decides_their_result(two_sweeps):
    table, sort = rows(collect([two_sweeps]))
    assert sort == "best_val_acc" and len(table) == 4  # not 2: the sweeps' optimizers differ
    for row in table:
        (key,) = {(j.choices["optimizer"], j.choices["activation"]) for j in row.jobs}
        assert sorted(row.values("best_val_acc")) == sorted(ACCS[key])
    means = [row.mean("best_val_acc") for row in table]
    assert means == sorted(means, reverse=True)


def test_the_report_gives_each_row_its_interval_and_its_comparison_with_the_best(two_sweeps):
    out = write_report([two_sweeps], options=Options(min_seeds=30), show=False)
    table = list(csv.DictReader((out / "report.csv").open()))
    found = {(r["optimizer"], r["activation"]): r for r in table}
    # the columns: the groups whose option differs, not the settings those options explain
    assert list(table[0])[:3] == ["optimizer", "activation", "best_val_acc_mean"]
    assert set(found) == set(ACCS)
    best = ACCS["sgd", "elu"]
    for key, values in ACCS.items():
        row = found[key]
        low, high = stats.t.interval(0.95, 2, loc=sum(values) / 3, scale=stats.sem(values))
        assert float(row["best_val_acc_ci_low"]) == pytest.approx(low)
        assert float(row["best_val_acc_ci_high"]) == pytest.approx(high)
        assert int(row["best_val_acc_n"]) == 3
        if key == ("sgd", "elu"):
            assert row["verdict"] == "best" and row["p_vs_best_best_val_acc"] == ""
            continue
        p = stats.ttest_ind(values, best, equal_var=False).pvalue
        assert float(row["p_vs_best_best_val_acc"]) == pytest.approx(p, rel=1e-3)
        assert row["verdict"].startswith("worse" if p < 0.05 else "not distinguishable")
    assert found["adam", "relu"]["verdict"].startswith("worse (p")
    assert found["adam", "elu"]["verdict"] == (
        f"not distinguishable from the best at n = 3 (p = "
        f"{stats.ttest_ind(ACCS['adam', 'elu'], best, equal_var=False).pvalue:.3f})"
    )
    for key in ACCS.keys() - {("sgd", "elu")}:  # (held against scipy in test_significance)
        needed = seeds_needed(ACCS[key], best, most=30)
        assert found[key]["seeds_needed"] == ("> 30" if needed is None else str(needed))
    assert int(found["adam", "relu"]["seeds_needed"]) <= 3  # a large difference: a few seeds
    # the study's figure (91.34) against the rows' test-accuracy intervals
    assert found["sgd", "elu"]["reference"].startswith("test_acc 91.34: ")
    test = [v - 0.01 for v in ACCS["sgd", "elu"]]
    low, high = stats.t.interval(0.95, 2, loc=sum(test) / 3, scale=stats.sem(test))
    inside = "inside" if low <= 0.9134 <= high else ("below" if 0.9134 < low else "above")
    assert f": {inside} the interval (NIN lab report, Table 2)" in found["sgd", "elu"]["reference"]
    # what the curves say, in the table and in words below it
    assert found["adam", "relu"]["curves"] == "over-fitting (3/3)"
    assert found["sgd", "elu"]["curves"] == ""
    markdown = (out / "report.md").read_text()
    assert "## What the curves say" in markdown and "gap 0.370 >= 0.1" in markdown
    assert "Welch's t-test at level 0.05" in markdown


def test_the_curves_rules_take_the_reports_thresholds(two_sweeps):
    options = Options(limits=Thresholds(overfit_gap=0.5))
    out = write_report([two_sweeps], options=options, show=False)
    assert "over-fitting" not in (out / "report.md").read_text()


def test_a_row_with_one_run_has_no_interval(tmp_path):
    write_job(tmp_path / "s" / "0", RECIPE, {"optimizer": "sgd"}, 0.9, seed=1)
    write_job(tmp_path / "s" / "1", {**RECIPE, "optimizer.lr": 0.01}, {"optimizer": "sgd"}, 0.8, 1)
    write_job(tmp_path / "s" / "2", {**RECIPE, "optimizer.lr": 0.01}, {"optimizer": "sgd"}, 0.7, 2)
    out = write_report([tmp_path / "s"], show=False)
    found = {r["optimizer.lr"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert found["0.1"]["verdict"] == "best (one run: no interval)"
    assert found["0.01"]["verdict"] == "best of the rows with n >= 2"
    assert found["0.1"]["best_val_acc_ci_low"] == ""


def test_every_setting_that_differs_is_a_column_but_an_options_own_name(tmp_path):
    sgd = {
        **RECIPE,
        "optimizer._target_": "SGD",
        "optimizer.momentum": 0.9,
        "trainer.max_epochs": 10,
    }
    adam = {
        **RECIPE,
        "optimizer._target_": "Adam",
        "optimizer.lr": 0.001,
        "optimizer.betas": [0.9, 0.99],
    }
    write_job(tmp_path / "a" / "0", sgd, {"optimizer": "sgd", "logger": "csv"}, 0.9, seed=1)
    write_job(tmp_path / "b" / "0", adam, {"optimizer": "adam", "logger": "wandb"}, 0.8, seed=1)
    table, _ = rows(collect([tmp_path]))
    # the rate both have, and the epochs a fixed override set; not momentum (Adam has none),
    # nor the loggers (no setting)
    assert columns(table) == ["optimizer", "optimizer.lr", "trainer.max_epochs"]


def test_rows_are_compared_with_the_best_row_that_has_repeats(tmp_path):
    write_job(tmp_path / "s" / "0", RECIPE, {}, 0.95, seed=1)  # one lucky run on top
    for seed, acc in ((1, 0.90), (2, 0.91), (3, 0.905)):
        write_job(tmp_path / "s" / str(seed), {**RECIPE, "optimizer.lr": 0.05}, {}, acc, seed)
    for seed, acc in ((1, 0.80), (2, 0.81), (3, float("nan"))):  # a NaN accuracy is no result
        write_job(tmp_path / "s" / str(3 + seed), {**RECIPE, "optimizer.lr": 0.5}, {}, acc, seed)
    out = write_report([tmp_path / "s"], show=False)
    found = {r["optimizer.lr"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert found["0.1"]["verdict"] == "best (one run: no interval)"
    assert found["0.05"]["verdict"] == "best of the rows with n >= 2"
    p = stats.ttest_ind([0.80, 0.81], [0.90, 0.91, 0.905], equal_var=False).pvalue
    assert (
        found["0.5"]["verdict"] == f"worse (p = {p:.3f})" and found["0.5"]["best_val_acc_n"] == "2"
    )


def test_damaged_files_of_a_job_are_named_not_a_traceback(tmp_path, caplog):
    job = write_job(tmp_path / "s" / "0", RECIPE, {}, 0.9, seed=1)
    (job / "metrics.json").unlink()  # not finished yet: placed by its saved config, which is cut
    (job / ".hydra" / "config.yaml").write_text("optimizer: {lr: [0.1\n")
    (job / ".hydra" / "hydra.yaml").write_text(": :\n")
    (job / "csv").mkdir()
    (job / "csv" / "metrics.csv").write_text("epoch,step,train/loss\n0,3,2.3\n1,7,1.2e\n")
    out = write_report([tmp_path / "s"], show=False)
    assert "1 unfinished" in (out / "report.md").read_text()
    assert (
        "config.yaml cannot be read" in caplog.text and "hydra.yaml cannot be read" in caplog.text
    )
    assert epoch_series(job)["train/loss"] == {0: 2.3}  # the value cut short left out


def test_a_record_of_an_older_cnnlab_is_placed_by_its_saved_config(make_cfg, tmp_path):
    cfg = make_cfg(["optimizer.lr=0.05"])
    for name, old in (("new", False), ("old", True)):
        job = write_job(tmp_path / "s" / name, settings(cfg), {}, 0.9, seed=42)
        (job / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        if old:  # a few settings, and no scope: what cnnlab recorded before
            record = json.loads((job / "metrics.json").read_text())
            del record["settings_scope"]
            record["settings"] = {"optimizer.lr": 0.05, "seed": 42}
            (job / "metrics.json").write_text(json.dumps(record))
    (row,) = rows(collect([tmp_path / "s"]))[0]  # one recipe
    assert len(row.jobs) == 2


def test_report_of_single_runs_has_a_row_per_recipe_and_marks_a_failed_one(make_cfg, tmp_path):
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    tiny = ["data=fake", "data.image_size=16", "model=base_cnn", "trainer.max_epochs=2", *FAST]
    run(make_cfg([*tiny, f"paths.output_dir={good}"]))
    with pytest.raises(ConfigError):
        run(make_cfg([*tiny, f"paths.output_dir={bad}", "data.batch_size=0"]))
    for path in (good, bad):  # what Hydra writes before the task runs
        (path / ".hydra").mkdir(exist_ok=True)
        (path / ".hydra" / "overrides.yaml").write_text("[]\n")
    out = write_report([tmp_path / "runs"], show=False)
    found = {r["data.batch_size"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert found["64"]["finished"] == "1" and found["0"]["finished"] == "0"
    assert "1 failed" in (out / "report.md").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    series = epoch_series(good)  # what curves.png plots: one point per epoch, at that epoch
    assert set(series["train/loss"]) == set(series["val/acc"]) == {0, 1}


def test_a_job_without_a_record_yet_is_placed_by_the_config_hydra_saved(make_cfg, tmp_path):
    cfg = make_cfg(["optimizer.lr=0.05"])
    job = tmp_path / "sweep" / "0" / ".hydra"
    job.mkdir(parents=True)
    (job / "overrides.yaml").write_text("[]\n")
    (job / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (unfinished,) = collect([tmp_path / "sweep"])
    assert unfinished.status == "unfinished" and unfinished.settings["optimizer.lr"] == 0.05
    assert "seed" not in unfinished.settings


def test_progress_in_words():
    now = Progress(total=8, finished=3, running=2, failed=1, seconds_per_job=120.0)
    assert now.waiting == 2
    # 2 waiting and 2 half done, 2 at a time: 120 s x 3 / 2
    assert now.seconds_left() == 180.0
    assert (
        now.line()
        == "sweep: 3 of 8 jobs finished, 2 running, 1 failed, 2 waiting; about 3 min left"
    )
    early = Progress(total=4, finished=0, running=1, failed=0, seconds_per_job=None)
    assert early.line().endswith("time left: known once a job has finished")
    assert (
        Progress(3, 2, 0, 1, 10.0).line()
        == "sweep: 2 of 3 jobs finished, 0 running, 1 failed, 0 waiting"
    )


def test_a_report_written_while_the_sweep_runs_says_how_far_it_is(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep / "0", RECIPE, {}, 0.9, seed=1)
    (sweep / PLAN).write_text(json.dumps({"jobs": 3}))  # what the sweep's start counted
    with FileLock(sweep / "1" / LOCK):  # job 1 trains
        (sweep / "1" / ".hydra").mkdir(parents=True)
        (sweep / "1" / ".hydra" / "overrides.yaml").write_text("[]\n")
        write_report([sweep], show=False)
    first = (sweep / "report.md").read_text().splitlines()[0]
    assert first.startswith("_sweep: 1 of 3 jobs finished, 1 running, 0 failed, 1 waiting")


@pytest.mark.slow
def test_a_sweep_with_three_seeds_a_row_reports_its_statistics_end_to_end(tmp_path):
    """-m optimizer=adam,sgd seed=1,2,3: six real jobs, the progress line as each starts, and
    a report whose figures are those of the jobs' own records."""
    command = [sys.executable, str(ROOT / "src" / "train.py"), "-m", "optimizer=adam,sgd"]
    command += ["seed=1,2,3", *TINY_DATA, "data.dataset.train_size=80", "data.val_split=0.25"]
    command += ["model=base_cnn", "model.hidden=16"]
    command += ["trainer.max_epochs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    lines = re.findall(
        r"sweep: (\d) of 6 jobs finished, (\d) running, 0 failed, (\d) waiting", output
    )
    assert lines == [(str(i), "1", str(5 - i)) for i in range(6)]
    assert "about" in output.split("sweep: 1 of 6")[1].splitlines()[0]  # a time once one ended
    records = [
        json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/metrics.json"))
    ]
    found = {r["optimizer"]: r for r in csv.DictReader((tmp_path / "sweep" / "report.csv").open())}
    assert set(found) == {"adam", "sgd"}
    for optimizer, row in found.items():
        accs = [r["best_val_acc"] for r in records if r["choices"]["optimizer"] == optimizer]
        assert len(accs) == 3 and int(row["best_val_acc_n"]) == 3
        low, high = stats.t.interval(0.95, 2, loc=sum(accs) / 3, scale=stats.sem(accs))
        if stats.sem(accs) == 0:  # three equal accuracies: an interval of one point
            low = high = accs[0]
        assert float(row["best_val_acc_ci_low"]) == pytest.approx(low)
        assert float(row["best_val_acc_ci_high"]) == pytest.approx(high)
        said = {
            f["rule"]
            for r in records
            if r["choices"]["optimizer"] == optimizer
            for f in r["diagnosis"]
        }
        assert all(rule in row["curves"] for rule in said)
    best, other = sorted(found, key=lambda o: -float(found[o]["best_val_acc_mean"]))
    assert found[best]["verdict"] == "best"
    assert found[other]["verdict"].startswith(
        ("worse (p", "not distinguishable from the best at n = 3")
    )
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "sweep:" not in report  # done: no progress line left in it


@pytest.mark.parametrize(
    ("make", "message"), [(lambda p: p / "missing", "is not a directory"), (lambda p: p, "no runs")]
)
def test_report_of_nothing_says_so(make, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        collect([make(tmp_path)])


def test_wandb_logger_config_resolves_with_a_tag_per_group(make_cfg):
    cfg = make_cfg(["logger=wandb", "model=nin"])  # as `--cfg job --resolve` prints it
    resolved = OmegaConf.create(OmegaConf.to_yaml(cfg.logger.wandb, resolve=True))
    assert "model=nin" in resolved["tags"] and resolved["group"] == cfg.task_name


def test_a_report_that_cannot_be_made_leaves_nothing_behind(tmp_path):
    missing, empty, a_file = tmp_path / "sweep-typo", tmp_path / "empty", tmp_path / "out.md"
    empty.mkdir()
    a_file.write_text("notes")
    with pytest.raises(ConfigError, match="sweep-typo: no such directory"):
        write_report([missing], show=False)
    with pytest.raises(ConfigError, match="out.md is a file: the report goes in a directory"):
        write_report([empty], a_file, show=False)
    with pytest.raises(ConfigError, match="no runs under"):
        write_report([empty], tmp_path / "new", show=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out.md"]
    assert a_file.read_text() == "notes" and list(empty.iterdir()) == []
