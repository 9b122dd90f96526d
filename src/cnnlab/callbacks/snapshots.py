"""Snapshots of one run for a snapshot ensemble (the CNN tricks slides; Huang et al. 2017): the
weights every k epochs, or at the end of each cosine cycle, where the learning rate is lowest."""

from pathlib import Path

from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LRScheduler

from cnnlab.callbacks.publish import Observer
from cnnlab.errors import ConfigError
from cnnlab.options import Natural


def restart_ends(schedule: LRScheduler | None, epochs: int, per_epoch: int = 1) -> list[int]:
    """The epochs (from 1) where the cycles of a warm-restart cosine schedule (warmed up or not,
    stepping ``per_epoch`` times an epoch) end, up to ``epochs``; [] for any other schedule."""
    schedule = getattr(schedule, "main", schedule)  # (cnnlab.training.schedules.Warmup's)
    if not isinstance(schedule, CosineAnnealingWarmRestarts):
        return []
    length, grow, ends = schedule.T_0 // per_epoch, schedule.T_mult, []
    end = length
    while end <= epochs:
        ends.append(end)
        length *= grow
        end += length
    return ends


class Snapshots(Observer):
    """``checkpoints/snapshot-e<epoch>.ckpt`` (what src/eval.py needs) every ``every_n_epochs``
    epochs and/or, with ``at_restarts``, at the end of each ``scheduler=cosine_restarts`` cycle."""

    def __init__(self, every_n_epochs: Natural = 0, at_restarts: bool = False) -> None:
        self.every_n_epochs, self.at_restarts = every_n_epochs, at_restarts
        self.ends: list[int] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        if not self.at_restarts:
            return
        configs = trainer.lr_scheduler_configs
        schedule = configs[0].scheduler if configs else None
        per_epoch = trainer.num_training_batches if configs and configs[0].interval == "step" else 1
        self.ends = restart_ends(schedule, trainer.max_epochs, per_epoch)
        if not self.ends:
            raise ConfigError(
                "callbacks.snapshots.at_restarts=true needs scheduler=cosine_restarts with a "
                f"cycle that ends within trainer.max_epochs={trainer.max_epochs}"
            )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        done = trainer.current_epoch + 1
        every = self.every_n_epochs and done % self.every_n_epochs == 0
        if every or done in self.ends:
            folder = Path(trainer.default_root_dir) / "checkpoints"
            trainer.save_checkpoint(folder / f"snapshot-e{done}.ckpt", weights_only=True)
