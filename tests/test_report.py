"""The results table of runs: rows, figures and files (sweeps are covered in test_launcher)."""

import csv

import pytest
from omegaconf import OmegaConf

from cnnlab.curves import epoch_series
from cnnlab.errors import ConfigError
from cnnlab.report import collect, write_report
from cnnlab.run import run

from conftest import FAST


def test_report_of_single_runs_has_a_row_per_run_and_marks_a_failed_one(make_cfg, tmp_path):
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    tiny = ["data=fake", "data.image_size=16", "model=base_cnn", "trainer.max_epochs=2", *FAST]
    run(make_cfg([*tiny, f"paths.output_dir={good}"]))
    with pytest.raises(ConfigError):
        run(make_cfg([*tiny, f"paths.output_dir={bad}", "data.batch_size=0"]))
    for path in (good, bad):  # what Hydra writes before the task runs
        (path / ".hydra").mkdir(exist_ok=True)
        (path / ".hydra" / "overrides.yaml").write_text("[]\n")
        (path / ".hydra" / "config.yaml").write_text("reference: null\n")
    out = write_report([tmp_path / "runs"], show=False)
    rows = {r["run"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert rows["good"]["finished"] == "1" and rows["bad"]["finished"] == "0"
    assert "1 failed" in (out / "report.md").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    series = epoch_series(good)  # what curves.png plots: one point per epoch, at that epoch
    assert set(series["train/loss"]) == set(series["val/acc"]) == {0, 1}


def test_wandb_logger_config_resolves_with_a_tag_per_group(make_cfg):
    cfg = make_cfg(["logger=wandb", "model=nin"])  # as `--cfg job --resolve` prints it
    resolved = OmegaConf.create(OmegaConf.to_yaml(cfg.logger.wandb, resolve=True))
    assert "model=nin" in resolved["tags"] and resolved["group"] == cfg.task_name


@pytest.mark.parametrize(
    ("make", "message"), [(lambda p: p / "missing", "is not a directory"), (lambda p: p, "no runs")]
)
def test_report_of_nothing_says_so(make, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        collect([make(tmp_path)])


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
