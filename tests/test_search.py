"""python src/search.py: an Optuna search whose trials are training jobs run side by side through
a Hydra launcher, that goes on where it was when rerun in its directory, and whose pruner stops
trials early."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import Mock

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from cnnlab.errors import ConfigError
from cnnlab.files import write_json
from cnnlab.results import progress
from cnnlab.search import command
from cnnlab.search.command import usable
from cnnlab.search.plan import check_overrides, check_values
from cnnlab.search.slots import slots
from cnnlab.search.space import read
from hydra_plugins.cnnlab_gpus.gpus_launcher import GpusLauncherConf

from conftest import ROOT, TINY_DATA

SEARCH = [sys.executable, str(ROOT / "src" / "search.py")]
# Two stand-in GPUs, as an allocation would make them visible (as in test_launcher.py).
GPUS_AB = {"CUDA_VISIBLE_DEVICES": "a,b", "PYTHONPATH": str(ROOT / "tests")}
TINY = [*TINY_DATA, "data.dataset.train_size=40", "model=base_cnn", "model.hidden=16"]
SPACE = """
n_trials: 4
params:
  optimizer.lr: {type: float, low: 1.0e-3, high: 0.3, log: true}
  trainer.max_epochs: {type: categorical, choices: [2, 4]}
# Each pair once, in whichever order the trials end (and so whichever ones the stop cuts off).
sampler:
  _target_: optuna.samplers.GridSampler
  search_space: {optimizer.lr: [0.003, 0.03], trainer.max_epochs: [2, 4]}
  seed: 0
# No accuracy reaches 1.01: from the third epoch (step 2) on, every trial is pruned. The
# two-epoch trials finish; the four-epoch ones are pruned after three.
pruner: {_target_: optuna.pruners.ThresholdPruner, lower: 1.01, n_warmup_steps: 2}
"""


def wait_for(done, process: subprocess.Popen, log: Path, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"{what}: never happened (the search's output: {log})")
        time.sleep(0.1)


def study_trials(directory: Path) -> dict[int, SimpleNamespace]:
    """Each trial in the search's journal: its state, value, end and parameters."""
    import optuna

    from cnnlab.search.study import STUDY, journal

    study = optuna.load_study(study_name=STUDY, storage=journal(directory))
    return {
        t.number: SimpleNamespace(
            state=t.state.name, value=t.value, ended=t.datetime_complete, params=t.params
        )
        for t in study.trials
    }


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> SimpleNamespace:
    """Four trials, two at a time on GPUs a and b, stopped (SIGTERM) once the third has started
    and rerun in the same directory to the end."""
    root = tmp_path_factory.mktemp("search")
    (root / "space.yaml").write_text(SPACE)
    go, study = root / "go", root / "study"
    # Each trial waits in its first batch until the test says go: trials 0 and 1 are both in
    # training at once, or the test never says it (and fails).
    pause = {"_target_": "fault_callbacks.PauseAt", "epoch": 0, "batch": 0, "seconds": 120}
    pause |= {"marker": "${paths.output_dir}/paused", "until": str(go)}
    fixed = [*TINY, *(f"+callbacks.pause.{k}={v}" for k, v in pause.items())]
    args = ["space.yaml", "hydra/launcher=gpus", *fixed, "--dir", "study"]
    env, log = {**os.environ, **GPUS_AB}, root / "first.log"
    with open(log, "wb") as out:
        first = subprocess.Popen([*SEARCH, *args], cwd=root, env=env, stdout=out, stderr=out)
    together = [study / n / "paused" for n in "01"]
    wait_for(lambda: all(p.is_file() for p in together), first, log, "trials 0, 1 in training")
    go.touch()

    def third_started() -> bool:  # once 0 and 1 have ended, their records kept as they are
        return (study / "2").is_dir() and all(ended(study, n) for n in (0, 1))

    wait_for(third_started, first, log, "trials 0 and 1 ended, and a freed slot took trial 2")
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=120)
    stopped = log.read_text()
    before = study_trials(study)
    rerun = subprocess.run(
        [*SEARCH, "--dir", "study"], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    return SimpleNamespace(
        dir=study,
        stopped=stopped,
        stopped_code=first.returncode,
        before=before,
        after=study_trials(study),
        rerun=rerun.stdout,
        fixed=fixed,
    )


def record(directory: Path, number: int) -> dict:
    return json.loads((directory / str(number) / "metrics.json").read_text())


def ended(directory: Path, number: int) -> bool:
    path = directory / str(number) / "metrics.json"
    return path.is_file() and record(directory, number)["status"] in ("finished", "pruned")


def span(job: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"])


@pytest.mark.slow
def test_four_trials_run_two_at_a_time_each_on_a_gpu_of_its_own(searched):
    (start0, end0), (start1, end1) = (span(record(searched.dir, n)) for n in (0, 1))
    assert start0 < end1 and start1 < end0  # in training at the same time
    devices = {record(searched.dir, n)["cuda_visible_devices"] for n in (0, 1)}
    assert devices == {"a", "b"}  # each on its own
    assert sorted(searched.after) == [0, 1, 2, 3]
    trials = searched.after.values()
    assert {t.state for t in trials} == {"COMPLETE", "PRUNED"}
    pairs = {(t.params["optimizer.lr"], t.params["trainer.max_epochs"]) for t in trials}
    assert pairs == {(0.003, 2), (0.003, 4), (0.03, 2), (0.03, 4)}  # the grid, each pair once
    for number in range(4):
        job = record(searched.dir, number)
        assert job["status"] in ("finished", "pruned")
        assert job["cuda_visible_devices"] in ("a", "b")
        assert f"optimizer.lr={searched.after[number].params['optimizer.lr']}" in job["overrides"]


@pytest.mark.slow
def test_a_stopped_search_keeps_its_ended_trials_and_runs_the_interrupted_ones_again(searched):
    assert searched.stopped_code == 128 + signal.SIGTERM, searched.stopped[-2000:]
    assert "go on with: python src/search.py --dir study" in searched.stopped
    ended = {n: t for n, t in searched.before.items() if t.state != "RUNNING"}
    cut = sorted(n for n, t in searched.before.items() if t.state == "RUNNING")
    assert ended and 2 in cut  # trial 2 had started when the search was stopped
    for number, trial in ended.items():
        assert searched.after[number] == trial  # kept as it was, not trained again
    assert f"run again: {', '.join(map(str, cut))}" in searched.rerun
    assert all(searched.after[n].state in ("COMPLETE", "PRUNED") for n in cut)


def test_the_pruner_stops_trials_and_each_is_recorded_pruned(searched):
    for number, trial in searched.after.items():
        job = record(searched.dir, number)
        if trial.params["trainer.max_epochs"] == 4:
            assert trial.state == "PRUNED" and job["status"] == "pruned"
            assert job["pruned"].startswith("pruned by ThresholdPruner after 3 epoch(s): val/acc")
        else:
            assert trial.state == "COMPLETE" and job["status"] == "finished"
            assert trial.value == job["best_val_acc"]
    report = (searched.dir / "report.md").read_text()
    assert report.count("| 1 pruned |") == 2 and report.count("| 1 finished |") == 2


def test_the_best_trial_is_one_command_line_and_optunas_plots_are_drawn(searched):
    line = searched.rerun.strip().splitlines()[-2]
    words = shlex.split(line)
    assert words[:2] == ["python", "src/train.py"]
    assert words[2 : 2 + len(searched.fixed)] == searched.fixed  # all but the launcher:
    assert "hydra/launcher=gpus" not in words  # a single run's command
    parsed = OverridesParser.create().parse_overrides(words[2 + len(searched.fixed) :])
    chosen = {o.key_or_group: o.value() for o in parsed}
    (trial,) = [t for t in searched.after.values() if t.params == chosen]  # the same values
    finished = [t.value for t in searched.after.values() if t.state == "COMPLETE"]
    assert trial.state == "COMPLETE" and trial.value == max(finished)
    for plot in ("history", "importances", "epochs"):
        assert (searched.dir / f"{plot}.png").stat().st_size > 1000


def test_a_pruned_trial_counts_as_pruned_not_failed_in_the_reports_progress_line(tmp_path):
    write_json(tmp_path / progress.PLAN, {"jobs": 3})
    for number, status in enumerate(["finished", "pruned"]):
        (tmp_path / str(number) / ".hydra").mkdir(parents=True)
        write_json(tmp_path / str(number) / "metrics.json", {"status": status})
    now = progress.state(tmp_path)
    assert (now.finished, now.pruned, now.failed, now.waiting) == (1, 1, 0, 1)
    assert "1 of 3 jobs finished, 0 running, 0 failed, 1 pruned, 1 waiting" in now.line()


@pytest.mark.parametrize(
    "space, said",
    [
        (
            "params: {optimizer.lr: {type: flot, low: 1, high: 2}}",
            "params.optimizer.lr: unknown type flot; choose from: float, int, categorical",
        ),
        (
            "params: {optimizer.lr: {type: float, low: 0.1, high: 0.001}}",
            "params.optimizer.lr: low (0.1) must be below high (0.001)",
        ),
        (
            "params: {optimizer.lr: {type: float, low: 0.1, hgh: 1}}",
            "params.optimizer.lr has no option hgh; it takes: type, low, high, log, step",
        ),
        (
            "n_trial: 5\nparams: {seed: {type: int, low: 1, high: 9}}",
            "no option n_trial; a space file takes: params, n_trials, sampler, pruner",
        ),
        ("params: {optimizer.lr: {type: float, low: 0, high: 1, log: true}}", "log needs low > 0"),
        ("params: {activation: {type: categorical, choices: []}}", "choices is empty"),
        (
            "params: {data.batch_size: {type: int, low: 8.5, high: 64}}",
            "params.data.batch_size.low=8.5: expected an integer",
        ),
    ],
)
def test_a_space_file_mistake_is_named_in_one_line(space, said):
    with pytest.raises(ConfigError) as refused:
        read(OmegaConf.to_container(OmegaConf.create(space)))
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_a_fixed_override_may_neither_sweep_nor_vary_what_the_space_varies():
    space = read({"params": {"optimizer.lr": {"type": "float", "low": 0.001, "high": 0.1}}})
    with pytest.raises(ConfigError, match="seed=1,2: every trial takes one value"):
        check_overrides(space, ["seed=1,2"])
    with pytest.raises(ConfigError, match="optimizer.lr is both varied by the space and fixed"):
        check_overrides(space, ["optimizer.lr=0.1"])


@pytest.mark.parametrize(
    ("params", "said"),
    [
        (  # the first trial may draw 0.05: the end is what a later trial can draw
            {"optimizer.lr": {"type": "float", "low": -1, "high": 0.1}},
            "params.optimizer.lr takes -1.0, which a trial refuses: optimizer.lr=-1.0: expected "
            "a number > 0",
        ),
        (
            {"data.batch_size": {"type": "categorical", "choices": [8, 0]}},
            "params.data.batch_size takes 0, which a trial refuses: data.batch_size=0: expected",
        ),
        (
            {"data.val_split": {"type": "float", "low": 0, "high": 0.2}},
            "params.data.val_split takes 0.0, which a trial refuses: the search ranks trials",
        ),
    ],
    ids=["range-end", "choice", "no-validation"],
)
def test_a_value_of_the_space_that_a_trial_would_refuse_is_refused_before_any_trial(params, said):
    space = read({"params": params})
    with pytest.raises(ConfigError) as refused:
        check_values(space, ["data=fake"])
    assert str(refused.value).startswith(said) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda d: d.write_text("x"), "is a file, not a folder"),
        (lambda d: (d / "0").mkdir(parents=True), "holds other files (0) and no search"),
    ],
    ids=["a-file", "a-sweep"],  # a sweep's: trial 0 would read its job 0's record as its own
)
def test_a_search_directory_of_something_else_is_refused(tmp_path, make, said):
    make(tmp_path / "d")
    with pytest.raises(ConfigError, match=re.escape(f"--dir {tmp_path / 'd'}")) as refused:
        usable(tmp_path / "d")
    assert said in str(refused.value)


@pytest.mark.parametrize("given", ["new", "empty"])
def test_a_start_refused_or_stopped_before_the_first_trial_leaves_nothing(
    tmp_path, monkeypatch, given
):
    space = tmp_path / "space.yaml"
    space.write_text("params: {optimizer.lr: {type: float, low: 0.01, high: 0.1}}")
    directory = tmp_path / "s"
    if given == "empty":
        directory.mkdir()
    monkeypatch.setattr(command, "create", Mock(side_effect=KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        command.search([str(space), "data=fake"], directory, None, None)
    assert list(directory.iterdir()) == [] if given == "empty" else not directory.exists()


def test_each_gpu_slot_sees_its_own_devices_as_the_launcher_would_share_them(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")  # an allocation's
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    packed = OmegaConf.structured(GpusLauncherConf(devices=[0, 2], jobs_per_gpu=2))
    seen = [s.env["CUDA_VISIBLE_DEVICES"] for s in slots(packed, None)]
    assert seen == ["4", "6", "4", "6"]  # each device once before any twice
    assert slots(packed, None)[0].overrides == ("hydra.launcher.devices=null",)
    pairs = OmegaConf.structured(GpusLauncherConf(gpus_per_job=2))
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots(pairs, None)] == ["4,5"]
    with pytest.raises(ConfigError, match="--parallel 2: hydra/launcher=gpus has room for 1"):
        slots(pairs, 2)


def test_the_command_line_refuses_a_bad_space_in_one_line_before_any_trial(tmp_path):
    (tmp_path / "space.yaml").write_text("params: {optimizer.lrr: {type: float, low: 0, high: 1}}")
    done = subprocess.run(
        [*SEARCH, "space.yaml", "data=fake", "--dir", "s"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("search: error: ") and done.stderr.count("\n") == 1
    assert "optimizer.lrr" in done.stderr
    assert not (tmp_path / "s").exists()  # nothing made
