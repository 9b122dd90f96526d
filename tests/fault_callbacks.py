"""Lightning callbacks that make a fault happen at a known point of a run, for the tests of what
survives it. Jobs started from the command line find them with PYTHONPATH=tests."""

import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class PauseAt(Callback):
    """After batch ``batch`` of epoch ``epoch`` (of training, or of validation with
    ``stage="val"``): write ``marker`` (the test's cue to kill or signal the process) and sleep
    ``seconds``, or until the file ``until`` exists."""

    observes_only = True  # leaves training as it was: not a setting (cnnlab.config.settings)

    def __init__(
        self,
        epoch: int,
        batch: int,
        marker: str,
        seconds: float,
        stage: str = "train",
        until: str | None = None,
    ):
        self.epoch, self.batch, self.marker, self.seconds = epoch, batch, marker, seconds
        self.stage, self.until = stage, until

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.stage == "train":
            self._pause(trainer, batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        if self.stage == "val" and not trainer.sanity_checking:
            self._pause(trainer, batch_idx)

    def _pause(self, trainer, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            # Checkpoints are written by one writer thread (AsyncCheckpointIO): wait for the
            # saves queued so far, so that a kill at the cue finds what the run had saved by
            # then, rather than racing the writer on a loaded machine.
            _wait_for_writer(trainer)
            Path(self.marker).write_text(str(trainer.global_step))
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline and not (self.until and Path(self.until).exists()):
                time.sleep(0.1)


class PoisonAt(Callback):
    """Make one weight NaN: at the start of epoch ``epoch`` (the next loss is NaN), or after
    its batch ``batch`` (an update gone wrong at the end of an epoch: the loss never shows it)."""

    def __init__(self, epoch: int, batch: int | None = None):
        self.epoch, self.batch = epoch, batch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and self.batch is None:
            self._poison(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            self._poison(pl_module)

    def _poison(self, pl_module) -> None:
        with torch.no_grad():
            next(pl_module.parameters()).view(-1)[0] = math.nan


class RecordDraws(Callback):
    """Writes ``<out>/rank<r>.json``: a digest of this process's initial weights and, at the
    first training batch of each epoch, of what the augmentation and dropout would draw next
    for one fixed probe batch (the same images in every process; the draws from a copy of the
    random state, so the run is not changed), to compare the processes' draws."""

    observes_only = True  # leaves training as it was: not a setting (cnnlab.config.settings)

    def __init__(self, out: str):
        self.out, self.record = Path(out), {"weights": None, "draws": {}}

    def on_fit_start(self, trainer, pl_module) -> None:
        self.record["weights"] = _digest(*pl_module.parameters())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx != 0:
            return
        shape = batch[0].shape
        probe = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape) / math.prod(
            shape
        )
        with torch.random.fork_rng():
            augmented = trainer.datamodule.augment(probe)
            dropped = torch.nn.functional.dropout(torch.ones(64), 0.5)
        self.record["draws"][trainer.current_epoch] = _digest(augmented, dropped)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))


def _digest(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class FillDisk(Callback):
    """At the start of epoch ``epoch``, once the saves queued so far are written: fill the file
    system of ``marker`` up to ``leave`` bytes, so that the epoch's checkpoint cannot be written
    (its small records still can). After each training batch from then on, ``marker`` holds the
    global step, so the test sees how far training went on the full disk."""

    observes_only = True  # leaves training as it was: not a setting (cnnlab.config.settings)

    def __init__(self, epoch: int, marker: str, leave: int):
        self.epoch, self.marker, self.leave = epoch, Path(marker), leave

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            _wait_for_writer(trainer)
            free = os.statvfs(self.marker.parent)
            with open(self.marker.parent / "filler", "wb") as f:
                f.write(b"\0" * (free.f_bavail * free.f_frsize - self.leave))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch > self.epoch and batch_idx == 0:
            _wait_for_writer(trainer)  # the failed save is known before the next batch trains

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch >= self.epoch:
            self.marker.write_text(str(trainer.global_step))


def _wait_for_writer(trainer) -> None:
    """Wait for the checkpoints queued so far (AsyncCheckpointIO's writer thread)."""
    writer = getattr(trainer.strategy.checkpoint_io, "_executor", None)
    if writer is not None:
        writer.submit(lambda: None).result()
