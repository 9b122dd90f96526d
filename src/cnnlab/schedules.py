"""Learning-rate schedules from config, with optional linear warmup in front of any of them."""

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, ReduceLROnPlateau, SequentialLR

from cnnlab.errors import ConfigError


def build_schedule(
    optimizer: Optimizer, cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: int
) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` dict for ``cfg``, or None for a constant learning rate.

    Args:
        cfg: ``scheduler`` (a ``_partial_`` config or null), ``interval`` (epoch | step),
            ``monitor``, ``warmup_epochs`` and ``warmup_start`` (the first epoch's fraction of lr).
        total_steps: optimizer steps in the whole run; fills a ``total_steps: null`` (OneCycle).
    """
    interval = cfg.get("interval", "epoch")
    warmup = cfg.get("warmup_epochs", 0) * (steps_per_epoch if interval == "step" else 1)
    start = cfg.get("warmup_start", 0.1)
    main_cfg = dict(cfg.get("scheduler") or {})
    if not main_cfg and not warmup:
        return None
    if main_cfg.get("total_steps", 0) is None:
        if not total_steps:
            raise ConfigError("this schedule needs the run's length: set trainer.max_epochs")
        main_cfg["total_steps"] = total_steps
    main = instantiate(main_cfg)(optimizer) if main_cfg else None
    if warmup:
        if isinstance(main, ReduceLROnPlateau) or "total_steps" in main_cfg:
            raise ConfigError(
                "scheduler.warmup_epochs works with every schedule but plateau and "
                "onecycle (which has its own warmup)"
            )
        ramp = LinearLR(optimizer, start_factor=start, total_iters=warmup)
        main = ramp if main is None else SequentialLR(optimizer, [ramp, main], milestones=[warmup])
    schedule = {"scheduler": main, "interval": interval}
    if cfg.get("monitor"):
        schedule["monitor"] = cfg["monitor"]
    return schedule
