"""Lightning callbacks that make a fault happen at a known point of a run, for the tests of what
survives it. Jobs started from the command line find them with PYTHONPATH=tests."""

import math
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class PauseAt(Callback):
    """After batch ``batch`` of epoch ``epoch``: write ``marker`` (the test's cue to kill or
    signal the process) and sleep ``seconds``, the weights changed and not yet saved."""

    def __init__(self, epoch: int, batch: int, marker: str, seconds: float):
        self.epoch, self.batch, self.marker, self.seconds = epoch, batch, marker, seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            Path(self.marker).write_text(str(trainer.global_step))
            time.sleep(self.seconds)


class PoisonAt(Callback):
    """At the start of epoch ``epoch``, make one weight NaN: the next loss is NaN."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = math.nan
