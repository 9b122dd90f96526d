"""Faults of the machine and of the files a run finds: each named in one line, nothing lost."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from omegaconf import OmegaConf

from cnnlab.cli import remove_refused
from cnnlab.errors import Busy, ConfigError
from cnnlab.files import LOCK, epoch_series
from cnnlab.results.report import write_report
from cnnlab.run.train import run

from conftest import FAST, ROOT, TINY_DATA

TESTS = Path(__file__).resolve().parent
SMALL = ["data=fake", "data.image_size=16", "model=base_cnn", "trainer.max_epochs=1", *FAST]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A file system of its own, 8 MB, that a test can fill (a tmpfs, where one can be mounted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here, so no small file system to fill")
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"a tmpfs cannot be mounted here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *args, *TINY_DATA],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_full_disk_stops_the_run_at_the_failed_save_and_keeps_the_previous_checkpoint(
    tmp_path, small_disk
):
    out, marker = small_disk / "run", small_disk / "trained-to"
    fill = "+callbacks.fill._target_=fault_callbacks.FillDisk"
    options = ["epoch=1", f"marker={marker}", "leave=262144"]  # room for the records only
    result = train(
        fill,
        *(f"+callbacks.fill.{o}" for o in options),
        "model=base_cnn",
        "trainer.max_epochs=4",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"cnnlab: run failed: no space left on device: {out / 'checkpoints'}/")
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed"
    assert record["error"] == f"SaveFailed: {line.removeprefix('cnnlab: run failed: ')}"
    # The first epoch's checkpoints, whole; no temporary file left of the failed one.
    saved = {p.name: torch.load(p, weights_only=True) for p in (out / "checkpoints").iterdir()}
    assert sorted(saved) == ["best.ckpt", "last.ckpt"]
    assert {s["epoch"] for s in saved.values()} == {0}
    # The run stopped before a batch of the epoch after the failed save trained.
    assert int(marker.read_text()) == 2 * saved["last.ckpt"]["global_step"]


def test_two_sweeps_into_one_directory_never_train_a_job_twice_at_once(tmp_path):
    sweep, held, go_on = tmp_path / "sweep", tmp_path / "held", tmp_path / "go-on"
    grid = ["-m", "model=base_cnn", "trainer.max_epochs=2", "activation=elu,relu"]
    grid.append(f"hydra.sweep.dir={sweep}")
    pause = ["epoch=0", "batch=1", f"marker={held}", "seconds=300", f"until={go_on}"]
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "train.py"), *grid, *TINY_DATA]
        + ["+callbacks.pause._target_=fault_callbacks.PauseAt"]
        + [f"+callbacks.pause.{p}" for p in pause],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS), "HYDRA_FULL_ERROR": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not held.exists():  # the first sweep is training job 0
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        second = train(*grid, cwd=tmp_path)  # job 0 is held: it trains job 1
    finally:
        go_on.touch()
        out, _ = first.communicate(timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert first.returncode == 0, out[-2000:]
    said = f"{sweep / '0'}: another process is training this job (it holds .cnnlab.lock): skipped"
    assert said in second.stdout + second.stderr
    assert f"{sweep / '1'} finished before (resume=auto): skipped" in out
    for job in ("0", "1"):  # each trained once, by one process: every epoch logged once
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "finished"
        assert sorted(epoch_series(sweep / job)["train/loss"]) == [0, 1]


def test_a_run_into_a_directory_another_process_trains_in_is_refused_and_left_alone(make_cfg):
    cfg = make_cfg(SMALL)
    out = Path(cfg.paths.output_dir)
    out.mkdir()
    (out / "train.log").write_text("the other run's log\n")
    with FileLock(out / LOCK):  # (flock: held against this process's own second open, too)
        with pytest.raises(Busy, match=f"{out} is in use: another process is training there"):
            run(cfg)
        remove_refused(out)  # what train.py does after a refusal
        assert sorted(p.name for p in out.iterdir()) == [LOCK, "train.log"]  # no record added
    remove_refused(out)
    assert not out.exists()  # free again: a refused run's directory is removed, lock and all


def test_damaged_records_and_checkpoints_count_as_unfinished(make_cfg, tmp_path, caplog):
    runs = tmp_path / "runs"
    for name in ("good", "damaged"):
        cfg = make_cfg([*SMALL, f"paths.output_dir={runs / name}"])
        run(cfg)
        (runs / name / ".hydra").mkdir()  # what Hydra writes before the task runs
        (runs / name / ".hydra" / "overrides.yaml").write_text("[]\n")
        (runs / name / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    out = runs / "damaged"
    record, last = out / "metrics.json", out / "checkpoints" / "last.ckpt"
    record.write_text(record.read_text()[:50])  # cut short, as by a full disk
    table = write_report([runs], show=False) / "report.csv"
    (row,) = csv.DictReader(table.open())  # one recipe (its settings from .hydra/config.yaml)
    assert row["finished"] == "1" and row["jobs"] == "2"
    assert "| 1 unfinished, 1 finished |" in (runs / "report.md").read_text()
    assert f"{record} is damaged" in caplog.text

    again = [*SMALL, f"paths.output_dir={out}", "resume=auto"]
    run(make_cfg(again))  # not skipped as finished: resumed from its checkpoint, recorded anew
    assert json.loads(record.read_text())["resumed_from"] == str(last)

    record.unlink()
    last.unlink()  # (it may be best.ckpt's hard link: a new file, not the same one cut)
    last.write_bytes(b"")
    run(make_cfg(again))
    assert json.loads(record.read_text())["resumed_from"] == str(out / "checkpoints" / "best.ckpt")
    assert f"{last} is damaged (the file is empty): not resumed from" in caplog.text

    record.unlink()
    for checkpoint in (out / "checkpoints").iterdir():
        checkpoint.unlink()
        checkpoint.write_text("not a checkpoint")
    run(make_cfg(again))  # nothing to go on from: trained afresh
    done = json.loads(record.read_text())
    assert done["status"] == "finished" and done["resumed_from"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"PK\x03\x04 cut", "cut short, or not a checkpoint: torch writes checkpoints as zip"),
        (b'{"state_dict": {}}', "cut short, or not a checkpoint"),
    ],
)
def test_resume_from_a_file_that_is_not_a_checkpoint_is_refused(
    make_cfg, tmp_path, content, message
):
    path = tmp_path / "given.ckpt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(f"resume={path}: cannot be read ({message}")):
        run(make_cfg([*SMALL, f"resume={path}"]))


def test_resume_from_another_networks_checkpoint_is_refused_in_one_line(make_cfg, tmp_path):
    run(make_cfg([*SMALL, f"paths.output_dir={tmp_path / 'cnn'}"]))
    ckpt = tmp_path / "cnn" / "checkpoints" / "last.ckpt"
    for other in (["model=nin"], ["data.num_classes=5"]):
        with pytest.raises(ConfigError) as caught:
            run(make_cfg([*SMALL, *other, f"resume={ckpt}"]))
        message = str(caught.value)
        assert message.startswith(f"resume={ckpt}: a checkpoint of another network: ")
        assert "\n" not in message
    assert " is 5x" in message and "here and 10x" in message  # the classifier's rows


def test_a_run_directory_that_is_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "taken").write_text("a file\n")
    for key in ("hydra.run.dir=taken", "hydra.run.dir=taken/run"):
        result = train(key, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr == f"cnnlab: error: {key}: taken is a file, not a folder\n"
    swept = train("-m", "hydra.sweep.dir=taken", cwd=tmp_path)
    assert swept.stderr == "cnnlab: error: hydra.sweep.dir=taken: taken is a file, not a folder\n"
    assert (tmp_path / "taken").read_text() == "a file\n" and len(list(tmp_path.iterdir())) == 1
