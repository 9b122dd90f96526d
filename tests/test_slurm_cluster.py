"""hydra/launcher=slurm on a real one-node SLURM cluster (Debian's slurm-wlm, with accounting),
which this module starts and stops: a grid as a job array and its report, a job killed while
the others finish, a requeue and a SIGUSR2 pre-emption that resume in their directory, a DDP
job pre-empted, and a request no node can hold. Skipped, with the reason, where the cluster
cannot be started (not root, the packages missing)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import slurm_cluster

from conftest import FAST, ROOT

pytestmark = pytest.mark.slurm
TESTS = Path(__file__).resolve().parent
# Jobs of a few seconds: 2 epochs of 8 steps, one CPU each (the node has two).
TINY = [
    "data=fake",
    "data.image_size=16",
    "data.dataset.train_size=72",
    "data.val_split=0.112",
    "data.batch_size=8",
    "model=base_cnn",
    "model.hidden=16",
    "optimizer=adam",
    "scheduler=none",
    "trainer.max_epochs=3",
    *FAST,
]
ONE_CPU = [
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.gpus_per_node=1",  # a stand-in GPU: SLURM sets CUDA_VISIBLE_DEVICES
    "hydra.launcher.timeout_min=10",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        started = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except slurm_cluster.ClusterUnavailable as why:
        pytest.skip(f"no SLURM cluster here: {why}")
    yield started
    started.stop()


def _sweep(cluster, tmp_path: Path, *args: str, wait: bool = True):
    """``train.py -m hydra/launcher=slurm`` from ``tmp_path``, the cluster's clients pointed at
    it (only this process's environment: other tests see no cluster)."""
    env = {**os.environ, **cluster.env, "PYTHONPATH": str(TESTS)}
    command = [sys.executable, str(ROOT / "src" / "train.py"), "-m", "hydra/launcher=slurm"]
    process = subprocess.Popen(
        [*command, "hydra.sweep.dir=sweep", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return process
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def _slurm(cluster, *command: str) -> str:
    env = {**os.environ, **cluster.env}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _job_id(sweep: Path, num: int) -> str:
    """SLURM's id of job ``num``, from submitit's folder: ``<array>_<num>``, or just ``<id>``
    for a sweep of one job (submitit submits that as a plain job)."""
    folders = [f.name for f in (sweep / ".submitit").iterdir() if f.is_dir()]
    if folders == [name for name in folders if name.isdigit()] and num == 0 and len(folders) == 1:
        return folders[0]
    return next((name for name in folders if name.endswith(f"_{num}")), "")


def _wait_for(marker: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.5)


def _metrics(sweep: Path, num: int) -> dict:
    return json.loads((sweep / str(num) / "metrics.json").read_text())


def _pause(marker: Path, seconds: int = 20) -> list[str]:
    """Each job pauses in epoch 1's second batch (epoch 0's checkpoint saved) and writes
    ``marker`` with its job number in the name: the test's cue to signal it."""
    callback = {"_target_": "fault_callbacks.PauseAt", "epoch": 1, "batch": 1, "seconds": seconds}
    return [
        *(f"+callbacks.pause.{k}={v}" for k, v in callback.items()),
        f"+callbacks.pause.marker={marker}" + "-${hydra:job.num}",
    ]


def test_a_request_no_node_can_hold_is_refused_before_submitting(cluster, tmp_path):
    code, out, err = _sweep(cluster, tmp_path, *TINY, "seed=1,2")  # the defaults: 8 CPUs, 32 GB
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("cnnlab: error: hydra/launcher=slurm: each job asks for 8 CPUs")
    assert (
        f"at most {cluster.cpus} CPUs" in lines[0] and "lower hydra.launcher.cpus_per_task" in err
    )
    assert not (tmp_path / "sweep" / ".submitit").exists()  # nothing was submitted
    assert _slurm(cluster, "squeue", "--noheader").strip() == ""


def test_a_grid_runs_as_an_array_and_a_killed_job_is_reported_at_the_end(cluster, tmp_path):
    marker = tmp_path / "paused"
    sweep = tmp_path / "sweep"
    process = _sweep(
        cluster, tmp_path, *TINY, *ONE_CPU, *_pause(marker, 5), "seed=1,2,3", wait=False
    )
    _wait_for(Path(f"{marker}-0"), process)
    _slurm(cluster, "scancel", "--signal=TERM", _job_id(sweep, 0))  # job 0 only
    out, err = process.communicate(timeout=600)
    assert process.returncode == 1, err[-3000:]
    assert "1 of 3 jobs failed: #0" in out + err
    assert _metrics(sweep, 0)["status"] == "interrupted"
    assert "SIGTERM" in _metrics(sweep, 0)["error"]
    for num in (1, 2):  # the others went on and finished
        done = _metrics(sweep, num)
        assert done["status"] == "finished" and done["epochs"] == 3
        assert done["cuda_visible_devices"] in {"0", "1"}  # the GPU SLURM gave the job
    array = {_job_id(sweep, n).split("_")[0] for n in range(3)}
    assert len(array) == 1  # one job array
    report = (sweep / "report.md").read_text()
    assert "2 finished" in report and "1 interrupted" in report
    states = _slurm(
        cluster, "sacct", "--noheader", "--parsable2", "--format=JobID,State", "-j", array.pop()
    )
    assert "COMPLETED" in states


def test_a_requeued_and_a_preempted_job_resume_in_their_directories(cluster, tmp_path):
    marker = tmp_path / "paused"
    sweep = tmp_path / "sweep"
    process = _sweep(cluster, tmp_path, *TINY, *ONE_CPU, *_pause(marker), "seed=1,2", wait=False)
    for num, how in ((0, ["scontrol", "requeue"]), (1, ["scancel", "--signal=USR2"])):
        _wait_for(Path(f"{marker}-{num}"), process)
        job = _job_id(sweep, num)
        _slurm(cluster, *how, job)
        _release_when_requeued(cluster, job)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    for num in (0, 1):
        done = _metrics(sweep, num)
        assert done["status"] == "finished" and done["epochs"] == 3
        assert done["resumed_from"] == str(
            (sweep / str(num)).resolve() / "checkpoints" / "last.ckpt"
        )


def test_a_ddp_job_preempted_by_sigusr2_finishes_and_the_sweep_succeeds(cluster, tmp_path):
    marker = tmp_path / "paused"
    sweep = tmp_path / "sweep"
    ddp = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.gpus_per_node=0",
    ]
    process = _sweep(
        cluster, tmp_path, *TINY, *ONE_CPU, *ddp, *_pause(marker), "seed=1", wait=False
    )
    _wait_for(Path(f"{marker}-0"), process)
    job = _job_id(sweep, 0)
    _slurm(cluster, "scancel", "--signal=USR2", job)
    _release_when_requeued(cluster, job)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    done = _metrics(sweep, 0)
    assert done["status"] == "finished" and done["epochs"] == 3
    assert done["resumed_from"].endswith("last.ckpt")


def _release_when_requeued(cluster, job: str, seconds: float = 120) -> None:
    """A requeued job waits ~2 minutes before it may start again (Reason=BeginTime): start it
    now, once SLURM has it pending again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = _slurm(cluster, "squeue", "--noheader", "--array", "--format=%T", f"--jobs={job}")
        if "PENDING" in state:
            cluster.release(job)
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} was not requeued")


def test_a_search_runs_its_trials_as_slurm_jobs_side_by_side_and_prunes_one(cluster, tmp_path):
    """src/search.py through hydra/launcher=slurm: two trials at once, each its own SLURM job,
    the pruner reached from the node through the study's journal file."""
    space = tmp_path / "space.yaml"
    space.write_text(
        "n_trials: 2\n"
        "params:\n  trainer.max_epochs: {type: categorical, choices: [1, 3]}\n"
        "sampler: {_target_: optuna.samplers.GridSampler, seed: 0,"
        " search_space: {trainer.max_epochs: [1, 3]}}\n"
        # No accuracy reaches 1.01: a trial still running at its second epoch is pruned.
        "pruner: {_target_: optuna.pruners.ThresholdPruner, lower: 1.01, n_warmup_steps: 1}\n"
    )
    env = {**os.environ, **cluster.env, "PYTHONPATH": str(TESTS)}
    command = [sys.executable, str(ROOT / "src" / "search.py"), str(space), "--parallel", "2"]
    fixed = [o for o in TINY if not o.startswith("trainer.max_epochs=")]
    command += ["hydra/launcher=slurm", *fixed, *ONE_CPU, "--dir", "search"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    records = {n: _metrics(tmp_path / "search", n) for n in (0, 1)}
    by_epochs = {r["settings"]["trainer.max_epochs"]: r for r in records.values()}
    assert by_epochs[1]["status"] == "finished"
    assert by_epochs[3]["status"] == "pruned" and "after 2 epoch(s)" in by_epochs[3]["pruned"]
    jobs = {_job_id(tmp_path / "search" / str(n), 0) for n in (0, 1)}
    assert len(jobs) == 2 and "" not in jobs
    fields = "--format=JobID,Submit,End"
    accounted = _slurm(cluster, "sacct", "--noheader", "--parsable2", fields, "-j", ",".join(jobs))
    times = [line.split("|")[1:] for line in accounted.splitlines() if line.split("|")[0] in jobs]
    assert len(times) == 2
    # Side by side: the second trial was submitted before the first ended (SLURM's clock, to
    # the second; a job lasts several). When each starts is the scheduler's business.
    assert max(submit for submit, _ in times) < min(end for _, end in times)
