"""Checkpoint files: written whole or not at all, and the same state not written twice.

best.ckpt and last.ckpt come from two ModelCheckpoints; on an epoch that improves both would save
the same state (for a net of 6M parameters, 2 x 50 MB gathered, copied and written). The second
becomes a hard link to the first; the next save of either replaces its own name only."""

import os
import shutil
from pathlib import Path
from typing import Any
from weakref import proxy

import torch
import torch.utils.serialization
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import Strategy

from cnnlab.files import atomic, save_failure


class Link:
    """In place of a checkpoint's state: the file ``source`` already holds it."""

    def __init__(self, source: str):
        self.source = source


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints through a temporary file renamed into place: a kill while saving leaves
    the previous one whole. A ``Link`` becomes a hard link (a copy where the file system has
    none); written by the same thread, it waits for its source.

    ``torch.save`` writes the file directly, without the zip's CRC-32s: ~20 ms of CPU for a 50 MB
    checkpoint against 77 ms through Lightning's writer (2-core CPU, taken from training), which
    serialises to memory first for remote file systems; torch.load never checks the CRC-32s (it
    loads a file with a changed byte), so they protected nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: BaseException | None = None  # the first save that failed

    def save_checkpoint(self, checkpoint: Any, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        if self.failure is not None:  # nothing after it: a Link would name the failed file's
            raise self.failure  # old content as the new state
        try:
            self._write(checkpoint, Path(path))
        except BaseException as err:
            self.failure = save_failure(err, path) or err
            if self.failure is err:
                raise
            raise self.failure from err

    def _write(self, checkpoint: Any, path: Path) -> None:
        with atomic(path) as tmp:
            if isinstance(checkpoint, Link):
                try:
                    os.link(checkpoint.source, tmp)
                except OSError:
                    shutil.copyfile(checkpoint.source, tmp)
            else:
                # Process-wide while it saves: a file another thread saves meanwhile would
                # lack its CRC-32s too, and load all the same. Through a file object, the zip's
                # folder is "archive", as in Lightning's files, not the temporary file's name.
                config = torch.utils.serialization.config
                with config.patch("save.compute_crc32", False), open(tmp, "wb") as file:
                    torch.save(checkpoint, file)


class Checkpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that links to what another one saved at the same point of
    training (same step, batch and stage) instead of saving it again."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._saved: tuple[tuple, str] | None = None  # (where in training, file)
        self._state_key: str | None = None

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's own: a run resumes from checkpoints written by either class. Kept:
        # Lightning asks for it at every hook of every batch (to name it to the profiler).
        if self._state_key is None:
            own = super().state_key.removeprefix(type(self).__qualname__)
            self._state_key = "ModelCheckpoint" + own
        return self._state_key

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        # Lightning's own hook for writing one file (it then updates what was saved when)
        here = (
            trainer.global_step,
            trainer.fit_loop.total_batch_idx,
            trainer.state.stage,
            self.save_weights_only,
        )
        # Strategies that write checkpoints their own way (FSDP, DeepSpeed: sharded) save twice.
        plain = type(trainer.strategy).save_checkpoint is Strategy.save_checkpoint
        twin = next(
            (
                other._saved[1]
                for other in trainer.checkpoint_callbacks
                if plain and isinstance(other, Checkpoint) and other is not self and other._saved
                if other._saved[0] == here and other._saved[1] != filepath
            ),
            None,
        )
        if twin is None:
            super()._save_checkpoint(trainer, filepath)
        else:
            trainer.strategy.save_checkpoint(Link(twin), filepath)  # rank 0 writes
            trainer.strategy.barrier("Trainer.save_checkpoint")
            self._last_global_step_saved = trainer.global_step
            self._last_checkpoint_saved = filepath
            if trainer.is_global_zero:  # as Lightning's save does (W&B's log_model)
                for logger in trainer.loggers:
                    logger.after_save_checkpoint(proxy(self))
        self._saved = (here, filepath)


class StopOnFailedSave(Callback):
    """End the run at the batch after a checkpoint failed to be written. The writer is a thread
    (AsyncCheckpointIO), whose error Lightning raises only at the next save, an epoch later:
    an epoch trained for nothing, on a full disk."""

    def __init__(self, io: AtomicCheckpointIO):
        self.io = io

    def on_train_batch_start(self, *args: Any) -> None:
        if self.io.failure is not None:
            raise self.io.failure

    on_train_batch_end = on_validation_batch_start = on_train_batch_start
