"""hydra/launcher=gpus: jobs in fresh processes, spread over devices, as Hydra's own launcher."""

import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from itertools import combinations
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from cnnlab.errors import ConfigError, LaunchError
from cnnlab.run.checks import check
from hydra_plugins.cnnlab_gpus.gpus_launcher import GpusLauncher

from conftest import CONF, FAST, ROOT, TINY_DATA, evaluate
from disk_formats import write_cifar10
from sweep_tasks import exit_hard, job_number

# Two stand-in GPUs, as an allocation would make them visible.
GPUS_AB = {"CUDA_VISIBLE_DEVICES": "a,b"}
# Tiny real jobs: each one's metrics.json says when it ran and which devices it saw.
TINY = [*TINY_DATA, "model=base_cnn", "model.hidden=16", "trainer.max_epochs=1"]


def sweep(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "src" / "train.py"), "-m", "hydra/launcher=gpus", *args]
    env = {**os.environ, **env}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def jobs(tmp_path: Path) -> list[dict]:
    """Each finished job's metrics.json, with its start and end as datetimes."""
    found = []
    for path in sorted((tmp_path / "logs" / "train" / "multiruns").glob("*/*/metrics.json")):
        job = json.loads(path.read_text())
        if job["status"] != "finished":
            continue
        job["span"] = [datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at")]
        job["dir"], job["num"] = path.parent, int(path.parent.name)
        found.append(job)
    return found


def overlap(a: dict, b: dict) -> bool:
    return a["span"][0] < b["span"][1] and b["span"][0] < a["span"][1]


def test_four_jobs_share_two_devices_one_job_each_at_a_time(tmp_path):
    # Each job pauses 3 s in its first batch: two jobs started together overlap even when one
    # of them is slower to start (a loaded machine), and the test can then say they did.
    pause = {"_target_": "fault_callbacks.PauseAt", "epoch": 0, "batch": 0, "seconds": 3}
    paused = [f"+callbacks.pause.{k}={v}" for k, v in pause.items()]
    paused.append(f"+callbacks.pause.marker={tmp_path / 'paused'}")
    tests = str(ROOT / "tests")
    result = sweep("seed=1,2,3,4", *TINY, *paused, cwd=tmp_path, PYTHONPATH=tests, **GPUS_AB)
    assert result.returncode == 0, result.stderr[-3000:]
    found = jobs(tmp_path)
    assert sorted(j["seed"] for j in found) == [1, 2, 3, 4]  # all four finished
    assert {j["cuda_visible_devices"] for j in found} == {"a", "b"}
    for a, b in combinations(found, 2):
        if a["cuda_visible_devices"] == b["cuda_visible_devices"]:
            assert not overlap(a, b), "two jobs held one device at once"
    assert any(overlap(a, b) for a, b in combinations(found, 2)), "no two jobs ran together"
    # What Hydra's basic launcher writes: job numbers, directories and .hydra files.
    for job in found:
        hydra_dir = job["dir"] / ".hydra"
        assert f"seed={job['seed']}" in (hydra_dir / "overrides.yaml").read_text()
        assert {p.name for p in hydra_dir.iterdir()} == {
            "config.yaml",
            "hydra.yaml",
            "overrides.yaml",
        }
    assert [j["num"] for j in found] == [0, 1, 2, 3]
    # The launcher's progress line as jobs start and end: two at a time, then all done.
    said = result.stdout + result.stderr
    assert "sweep: 0 of 4 jobs finished, 2 running, 0 failed, 2 waiting" in said
    assert re.search(r"sweep: 1 of 4 jobs finished, \d running, 0 failed, \d waiting; about", said)
    assert "sweep: 4 of 4 jobs finished, 0 running, 0 failed, 0 waiting" in said
    # The sweep's report: the four seeds are one configuration, as mean ± std over n=4.
    (report,) = tmp_path.glob("logs/train/multiruns/*/report.csv")
    (row,) = list(csv.DictReader(report.open()))
    assert int(row["test_acc_n"]) == 4 and row["finished"] == "4"
    accs = [j["test_acc"] for j in found]
    assert float(row["test_acc_mean"]) == pytest.approx(statistics.fmean(accs))
    assert float(row["test_acc_std"]) == pytest.approx(statistics.stdev(accs))


def test_two_jobs_per_gpu_overlap_and_a_failed_job_does_not_stop_the_others(tmp_path):
    # batch size 0 is refused at start: job 2 fails while 0 and 1 share device a.
    result = sweep(
        "hydra.launcher.devices=[1]",  # the second visible device: b
        "hydra.launcher.jobs_per_gpu=2",
        "data.batch_size=8,4,0",
        *[o for o in TINY if not o.startswith("data.batch_size")],
        "logger=wandb",  # a resolver-built config in a fresh process
        cwd=tmp_path,
        WANDB_MODE="offline",
        **GPUS_AB,
    )
    assert result.returncode != 0 and "data.batch_size=0: expected an integer >= 1" in result.stderr
    found = jobs(tmp_path)
    assert [j["num"] for j in found] == [0, 1]
    assert overlap(*found) and {j["cuda_visible_devices"] for j in found} == {"b"}
    log = next((tmp_path / "logs").glob("train/multiruns/*/2/launcher.log")).read_text()
    assert "data.batch_size=0: expected an integer >= 1" in log
    (report,) = tmp_path.glob("logs/train/multiruns/*/report.md")  # written after each job
    lines = report.read_text().splitlines()
    assert any(line.startswith("| 0 |") and "1 failed" in line for line in lines)
    assert sum("1 finished" in line for line in lines) == 2
    assert len(list(tmp_path.glob("logs/train/multiruns/*/[01]/wandb/offline-run-*/*.wandb"))) == 2


def test_ctrl_c_stops_every_running_job(tmp_path):
    command = [sys.executable, str(ROOT / "src" / "train.py"), "-m", "hydra/launcher=gpus"]
    args = ["seed=1,2,3", *TINY, "trainer.max_epochs=50"]
    parent = subprocess.Popen(
        [*command, *args],
        cwd=tmp_path,
        env={**os.environ, **GPUS_AB},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("logs/train/multiruns/*/*/launcher.log"))) < 2:
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.2)
    parent.send_signal(signal.SIGINT)
    output = parent.communicate(timeout=120)[0].decode()
    pids = [int(pid) for pid in re.findall(r"\(GPU \w+, pid (\d+)\)", output)]
    assert len(pids) == 2, output  # two jobs had started, the third never did
    for pid in pids:
        try:
            os.kill(pid, 0)
            raise AssertionError(f"job process {pid} still runs")
        except ProcessLookupError:
            pass


def test_a_job_that_dies_is_failed_and_its_end_callbacks_still_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "a")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3", job_name="train"):
        overrides = [
            "hydra/launcher=gpus",
            "seed=5,6,7",
            f"hydra.sweep.dir={tmp_path}",
            "~hydra.callbacks.report",
            "+hydra.callbacks.record._target_=sweep_tasks.RecordJobEnds",
        ]
        hydra = GlobalHydra.instance().hydra
        with pytest.raises(RuntimeError, match="job #1 exited with code 3"):
            hydra.multirun("train", exit_hard, overrides, with_log_configuration=False)
    GlobalHydra.instance().clear()
    ends = sorted((tmp_path / "job_ends.txt").read_text().splitlines())
    assert ends == ["0 COMPLETED", "1 FAILED", "2 COMPLETED"]


def test_a_device_named_twice_is_one_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "a,b")
    with pytest.raises(LaunchError, match="2 GPU.s. per job but 1 available"):
        GpusLauncher(devices=[0, 0], gpus_per_job=2)._devices()


def test_devices_index_the_gpus_the_allocation_made_visible(monkeypatch):
    # As SLURM's --gres, docker --gpus device=4,5 or a shared machine would leave it.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert GpusLauncher()._devices() == ["4", "5"]
    assert GpusLauncher(devices=[1])._devices() == ["5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2e,GPU-1c3d")  # UUIDs pass through
    assert GpusLauncher(devices=[1, 0])._devices() == ["GPU-1c3d", "GPU-8f2e"]
    for wrong in ([2], [-1], ["a"]):
        with pytest.raises(LaunchError, match=r"index no visible GPU; 2 visible .*0 to 1"):
            GpusLauncher(devices=wrong)._devices()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(LaunchError, match=r"devices=\[0\]: no GPU is visible"):
        GpusLauncher(devices=[0])._devices()


def test_sweep_returns_what_hydras_basic_launcher_returns(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "a,b")

    def returns(*launcher: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF), version_base="1.3", job_name="train"):
            hydra = GlobalHydra.instance().hydra
            overrides = [
                *launcher,
                "seed=5,6,7",
                f"hydra.sweep.dir={tmp_path / launcher[0].split('=')[1]}",
                "~hydra.callbacks.report",  # no runs here to report on
            ]
            (batch,) = hydra.multirun("train", job_number, overrides, with_log_configuration=False)
        GlobalHydra.instance().clear()
        return [(r.return_value, list(r.overrides), r.hydra_cfg.hydra.job.num) for r in batch]

    basic = returns("hydra/launcher=basic")
    gpus = returns("hydra/launcher=gpus")
    assert gpus == basic == [(0, ["seed=5"], 0), (10, ["seed=6"], 1), (20, ["seed=7"], 2)]


def test_a_ddp_job_in_a_sweep_gets_two_processes_and_tests_like_one(tmp_path, make_cfg):
    """trainer=ddp inside -m: the launcher gives the job its own processes (Lightning starts
    the second by running the job's command again), and the test set is not padded."""
    write_cifar10(tmp_path / "data", per_batch=40, test=51)  # odd: two shares of 25 and 26
    data = ["data.dataset.verify=false", "data.batch_size=20"]
    run = [*data, "model=base_cnn", "optimizer=adam", "scheduler=none", "trainer.max_epochs=3"]
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true"]
    result = sweep("hydra.launcher.gpus_per_job=2", *ddp, *run, *FAST[1:], cwd=tmp_path, **GPUS_AB)
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = jobs(tmp_path)
    assert job["cuda_visible_devices"] == "a,b"
    log = (job["dir"] / "launcher.log").read_text()
    assert "Starting with 2 processes" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    acc, _ = evaluate(job["dir"] / "checkpoints" / "best.ckpt", make_cfg(data))
    assert job["test_acc"] == pytest.approx(acc, abs=1e-6) and 0 < acc


def test_ddp_inside_a_sweep_of_the_basic_launcher_is_refused(make_cfg):
    # Its second process would run the command line again: the whole sweep (Lightning #11300).
    cfg = make_cfg(["trainer=ddp", "trainer.accelerator=cpu", "hydra.mode=MULTIRUN"])
    with pytest.raises(ConfigError, match="use hydra/launcher=gpus with hydra.launcher.gpus_per"):
        check(cfg)
    check(make_cfg(["trainer=ddp", "trainer.accelerator=cpu"]))  # a single run may


APP = """
import hydra
from omegaconf import OmegaConf

from .helper import shout


@hydra.main(config_path=None, version_base="1.3")
def main(cfg):
    if cfg.fail:
        raise ValueError(f"boom in job {cfg.fail}")
    return shout(cfg.greeting)


if __name__ == "__main__":
    OmegaConf.register_new_resolver("hello", lambda: "hi")  # only in the launching process
    main()
"""


def test_a_package_app_with_relative_imports_and_a_runtime_resolver(tmp_path):
    """``python -m pkg.app -m``: its relative import works in the jobs, a resolver its
    ``__main__`` block registered reaches them, a failed job's traceback (the user's frame)
    is in its launcher.log and printed at the end, and a rerun adds to launcher.log."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "helper.py").write_text("def shout(s):\n    return s.upper()\n")
    (tmp_path / "pkg" / "app.py").write_text(APP)
    command = [sys.executable, "-m", "pkg.app", "-m", "hydra/launcher=gpus"]
    args = ["+greeting=${hello:}", "+fail=0,1", "hydra.sweep.dir=sweep"]
    env = {**os.environ, **GPUS_AB}
    for _ in range(2):  # the same sweep twice, into one directory
        done = subprocess.run(
            [*command, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1
        # The error at the end names the user's file and line, as Hydra's own launcher does.
        assert re.search(
            r'File ".*pkg/app\.py", line 11, in main\n.*\nValueError: boom', done.stderr
        )
        assert "#1 failed: ValueError: boom in job 1" in done.stdout  # Hydra logs there
    ok, failed = (tmp_path / "sweep" / str(n) / "launcher.log" for n in (0, 1))
    assert failed.read_text().count("==== job #1, GPU b, started") == 2
    assert failed.read_text().count("ValueError: boom in job 1") == 2
    assert ok.read_text().count("==== job #0, GPU a, started") == 2
    assert "resolver" not in ok.read_text()  # nothing was left out of the resolvers it needed
    assert "HI" not in done.stdout  # a job's output goes to its own log, not the sweep's
