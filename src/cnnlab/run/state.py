"""The run's state that every checkpoint carries."""

import time
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from cnnlab.config.settings import SCOPE, settings
from cnnlab.errors import Diverged


class RunState(Callback):
    """Saved in every checkpoint, so that a resumed run is checked, timed in full and logged to
    the same W&B run; another run's checkpoint (``carry=False``) starts the clock and the W&B
    run afresh. Non-finite weights are never saved."""

    def __init__(self, cfg: DictConfig, carry: bool = True):
        self.settings = settings(cfg)
        self.carry = carry
        self.seconds_before = 0.0
        self.wandb_id: str | None = None
        self._started = time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()
        ids = [lg.version for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        self.wandb_id = ids[0] if ids else self.wandb_id

    def seconds(self) -> float:
        """Training time over every attempt so far."""
        return self.seconds_before + time.perf_counter() - self._started

    def state_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "settings_scope": SCOPE,
            "seconds": self.seconds(),
            "wandb_id": self.wandb_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.carry:
            self.seconds_before = state.get("seconds", 0.0)
            self.wandb_id = state.get("wandb_id")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # The loss is checked every step; an update can still leave non-finite weights at the
        # last step of an epoch, which must not replace the last good checkpoint.
        finite = torch.stack([p.detach().isfinite().all() for p in pl_module.parameters()])
        if not bool(finite.all()):
            raise Diverged(
                f"the weights are not finite after epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}: the checkpoint is not saved"
            )
