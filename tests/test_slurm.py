"""hydra/launcher=slurm: what can be checked without a cluster. The array's resources come from
the config; a job that is requeued (submitit's checkpoint()) resumes in its own directory."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from cnnlab.errors import LaunchError
from cnnlab.run.assemble import build_trainer
from hydra_plugins.cnnlab_slurm.slurm_launcher import check_fits

from conftest import CONF, FAST, ROOT


class RecordingExecutor:
    """Stands in for submitit.AutoExecutor: records what the launcher asks of SLURM."""

    seen: dict = {}

    def __init__(self, cluster: str, folder: str, **options):
        self.seen.update(cluster=cluster, folder=folder, **options)

    def update_parameters(self, **parameters):
        self.seen.update(parameters)

    def map_array(self, fn, *job_args):
        self.seen["array"] = list(zip(*job_args, strict=True))
        return []


def test_sweep_becomes_one_array_with_the_configured_resources(tmp_path, monkeypatch):
    monkeypatch.setattr(submitit, "AutoExecutor", RecordingExecutor)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        overrides = [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=2",
            "hydra.launcher.timeout_min=60",
            f"hydra.sweep.dir={tmp_path}",
        ]
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    HydraConfig.instance().set_config(cfg)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    launcher.launch([["seed=1"], ["seed=2"], ["seed=3"]], initial_job_idx=0)

    seen = RecordingExecutor.seen
    assert seen["cluster"] == "slurm" and seen["folder"] == f"{tmp_path}/.submitit/%j"
    assert seen["slurm_partition"] == "gpu" and seen["gpus_per_node"] == 2
    assert seen["timeout_min"] == 60 and seen["mem_gb"] == 32 and seen["cpus_per_task"] == 8
    assert seen["slurm_array_parallelism"] == 64 and seen["slurm_max_num_timeout"] == 3
    assert seen["slurm_signal_delay_s"] == 120
    assert [(job[0], job[2]) for job in seen["array"]] == [
        (["seed=1"], 0),
        (["seed=2"], 1),
        (["seed=3"], 2),
    ]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_a_requeued_job_resumes_from_its_own_last_checkpoint(tmp_path, monkeypatch):
    command = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        "hydra/launcher=submitit_local",
    ]
    run = [
        "data=fake",
        "data.image_size=16",
        "data.dataset.train_size=400",
        "data.batch_size=8",
        "model=base_cnn",
        "model.hidden=16",
        "trainer.max_epochs=4",
        *FAST[1:],
    ]
    parent = subprocess.Popen(
        [*command, *run], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # Run until the first epoch's checkpoint is saved, then end the job as a timeout would.
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob("logs/train/multiruns/*/0/checkpoints/last.ckpt")):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    (job_folder,) = tmp_path.glob("logs/train/multiruns/*/.submitit/[0-9]*")  # the job id
    for task in children(int(job_folder.name)):
        os.kill(task, signal.SIGKILL)
    parent.wait(timeout=120)
    (job_dir,) = tmp_path.glob("logs/train/multiruns/*/0")
    assert not (job_dir / "metrics.json").exists()

    # SLURM requeues the job: submitit asks the launcher's checkpoint() what to run again.
    submitted = pickle.loads((job_folder / f"{job_folder.name}_submitted.pkl").read_bytes())
    requeued = submitted.function.checkpoint(*submitted.args, **submitted.kwargs)
    monkeypatch.chdir(tmp_path)  # a requeued job starts where the sweep was submitted
    executor = submitit.LocalExecutor(folder=job_folder.parent / "requeued")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(requeued.function, *requeued.args, **requeued.kwargs)
    job.result()

    metrics = json.loads((job_dir / "metrics.json").read_text())
    last = job_dir.resolve() / "checkpoints" / "last.ckpt"
    assert metrics["status"] == "finished" and metrics["epochs"] == 4
    assert metrics["resumed_from"] == str(last)
    assert "Restoring states from the checkpoint path" in (job.stdout() or "") + (
        job.stderr() or ""
    )


def test_lightning_leaves_slurm_requeueing_to_submitit(make_cfg, monkeypatch):
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "node1"}
    for key, value in {
        **slurm,
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }.items():
        monkeypatch.setenv(key, value)
    trainer = build_trainer(make_cfg(["data=fake", *FAST]))
    environment = trainer._accelerator_connector.cluster_environment
    assert type(environment).__name__ == "SLURMEnvironment" and not environment.auto_requeue


@pytest.mark.parametrize(
    ("launcher", "cls"), [("slurm", "SlurmLauncher"), ("gpus", "GpusLauncher")]
)
def test_launchers_compose(launcher, cls):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.launcher._target_.endswith(cls)


@pytest.fixture
def sinfo(tmp_path, monkeypatch):
    """A stand-in ``sinfo`` on PATH that prints what the real one prints for one node of 2
    CPUs, 7.8 GB and two GPUs in partition debug (the default) and one with none in cpu."""
    script = tmp_path / "bin" / "sinfo"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nprintf '2|8000|gpu:2|debug*\\n16|64000|(null)|cpu\\n'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")


def test_a_request_no_node_can_hold_is_refused_before_submitting(sinfo):
    defaults = {"cpus_per_task": 8, "tasks_per_node": 1, "mem_gb": 32, "gpus_per_node": 1}
    with pytest.raises(LaunchError) as refused:
        check_fits({**defaults, "partition": None})
    assert str(refused.value) == (
        "hydra/launcher=slurm: each job asks for 8 CPUs (cpus_per_task x tasks_per_node), "
        "mem_gb=32 and gpus_per_node=1, but no node of the default partition has that (at most "
        "2 CPUs, 7 GB, 2 GPUs): lower hydra.launcher.cpus_per_task, mem_gb or gpus_per_node"
    )
    check_fits({**defaults, "partition": None, "cpus_per_task": 1, "mem_gb": 4, "gpus_per_node": 2})
    check_fits({**defaults, "partition": "cpu", "gpus_per_node": 0})
    with pytest.raises(LaunchError, match="gpus_per_node=1, but no node of partition cpu"):
        check_fits({**defaults, "partition": "cpu"})
    with pytest.raises(LaunchError, match="partition=gpu: sinfo lists no such partition"):
        check_fits({**defaults, "partition": "gpu"})


class EndedJob:
    """A submitit job that has ended: with a result, or (``result`` None) without one, as a
    job killed by ``scancel -s TERM`` ends."""

    def __init__(self, job_id: str, result):
        self.job_id, self.result = job_id, result

    def done(self) -> bool:
        return True

    def results(self):
        if self.result is None:
            raise submitit.core.utils.UncompletedJobError(
                f"Job {self.job_id} (task: 0) has not produced any output (state: FAILED)\n..."
            )
        return [self.result]


def test_a_job_that_ended_without_a_result_is_reported_once_all_are_done(tmp_path, monkeypatch):
    from hydra.core.utils import JobReturn, JobStatus

    class Executor(RecordingExecutor):
        def map_array(self, fn, *job_args):
            ok = JobReturn(overrides=["seed=2"], status=JobStatus.COMPLETED, _return_value=7)
            return [EndedJob("5_0", None), EndedJob("5_1", ok)]

    monkeypatch.setattr(submitit, "AutoExecutor", Executor)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3", job_name="train"):
        overrides = [
            "hydra/launcher=slurm",
            "seed=1,2",
            f"hydra.sweep.dir={tmp_path}",
            "~hydra.callbacks.report",
            "+hydra.callbacks.record._target_=sweep_tasks.RecordJobEnds",
        ]
        hydra = GlobalHydra.instance().hydra
        with pytest.raises(RuntimeError, match=r"job #0 \(5_0\): Job 5_0 .*state: FAILED\)$"):
            hydra.multirun("train", print, overrides, with_log_configuration=False)
    GlobalHydra.instance().clear()
    # job 1's own process called its end callbacks; job 0's were called by the launcher
    assert (tmp_path / "job_ends.txt").read_text() == "0 FAILED\n"
