"""DDP on two CPU processes (gloo), from the command line as a user runs it: each process
draws its own augmentations from the same initial weights, and a run killed mid-epoch and
resumed ends with the very weights of a run never stopped."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from conftest import FAST, ROOT

TESTS = Path(__file__).resolve().parent
# Shuffled, augmented data and dropout: randomness each process must draw for itself, and a
# resumed run must replay. 64 images, 8 a batch per process: 4 steps an epoch.
DDP = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "trainer.deterministic=true",
    "trainer.max_epochs=3",
    "data=fake",
    "data.image_size=16",
    "data.dataset.train_size=72",
    "data.val_split=0.112",
    "data.batch_size=8",
    "augment=standard",
    "model=base_cnn",
    "model.hidden=16",
    "model.dropout=0.3",
    "optimizer=adam",
    "scheduler=none",
    *FAST,
]


def _train(out: Path, *extra: str, wait: bool = True) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    job = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "train.py"), *DDP, f"hydra.run.dir={out}", *extra],
        cwd=out.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # rank 0 and the rank Lightning starts: one group to kill
    )
    if wait:
        assert job.wait(timeout=600) == 0, job.stderr.read()[-3000:]
    return job


def _weights(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_ranks_draw_their_own_batches_and_a_killed_run_resumes_bit_for_bit(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    draws = tmp_path / "draws"
    _train(
        whole,
        "+callbacks.draws._target_=fault_callbacks.RecordDraws",
        f"+callbacks.draws.out={draws}",
    )
    ranks = [json.loads((draws / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # one initial model
    assert len(ranks[0]["draws"]) == 3
    for epoch in ranks[0]["draws"]:  # but each process its own crops, flips, dropout masks
        assert ranks[0]["draws"][epoch] != ranks[1]["draws"][epoch], epoch

    marker = tmp_path / "in-epoch-2"
    pause = {"_target_": "fault_callbacks.PauseAt", "epoch": 1, "batch": 1, "seconds": 600}
    paused = [f"+callbacks.pause.{k}={v}" for k, v in pause.items()]
    job = _train(killed, *paused, f"+callbacks.pause.marker={marker}", wait=False)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert job.poll() is None and time.monotonic() < deadline, job.stderr.read()[-3000:]
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)  # both processes, mid-epoch, nothing saved
    job.wait()
    assert not (killed / "metrics.json").exists()
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    _train(killed, "resume=auto")
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, killed))
    assert b["status"] == "finished" and b["resumed_from"].endswith("last.ckpt")
    for key in ("best_val_acc", "test_acc", "test_loss", "epochs"):
        assert a[key] == b[key], key
    weights = [_weights(d) for d in (whole, killed)]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name  # bit for bit
