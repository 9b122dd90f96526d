"""Learning-rate schedules from config, with optional linear warmup in front of any of them.

A schedule's arguments are always in epochs (``T_max``, ``milestones``, ``step_size``, ``T_0``,
a per-epoch ``gamma``); ``interval: step`` only makes the rate change after every optimizer
step, so those arguments are converted to steps here. A warmup scales the start of the schedule
and shifts nothing: the milestones, restarts and the end of the run fall where they would
without it.
"""

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ConstantLR, LRScheduler

from cnnlab.errors import ConfigError
from cnnlab.options import Target, check_options
from cnnlab.registry import build

# The arguments of torch's schedulers that count epochs ("count") or act once per epoch
# ("rate"), by class name. Schedules not listed here can only be stepped once per epoch.
EPOCH_ARGS: dict[str, dict[str, str]] = {
    "StepLR": {"step_size": "count"},
    "MultiStepLR": {"milestones": "count"},
    "ExponentialLR": {"gamma": "rate"},
    "CosineAnnealingLR": {"T_max": "count"},
    "CosineAnnealingWarmRestarts": {"T_0": "count"},
    "OneCycleLR": {},  # its one length, total_steps, is filled in below
}
# Lengths that a null in the config means "the whole run", in the schedule's own steps.
RUN_LENGTH_ARGS = ("T_max", "total_steps")


class Warmup(LRScheduler):
    """Scale the first ``steps`` rates of ``main`` by a factor rising linearly from ``start``
    to 1. ``main`` counts from the first step as if there were no warmup (timm's schedulers do
    not shift theirs either), so only the start of the run changes."""

    def __init__(self, optimizer: Optimizer, main: LRScheduler, steps: int, start: float):
        self.main, self.steps, self.start = main, steps, start
        super().__init__(optimizer)

    def step(self, epoch: int | None = None) -> None:
        groups = self.optimizer.param_groups
        if self.last_epoch >= 0:  # the first call comes from __init__, after main's own first
            # Recursive schedules compute the next rate from the current one: give main its own.
            for group, lr in zip(groups, self.main.get_last_lr(), strict=True):
                group["lr"] = lr
            self.main.step()
        self.last_epoch += 1
        scale = self.start + (1 - self.start) * min(1.0, self.last_epoch / self.steps)
        for group, lr in zip(groups, self.main.get_last_lr(), strict=True):
            group["lr"] = lr * scale
        self._last_lr = [group["lr"] for group in groups]

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "main")}
        return {**state, "main": self.main.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.main.load_state_dict(state.pop("main"))
        self.__dict__.update(state)


def schedule_options(
    scheduler: Target | None = None,
    interval: Literal["epoch", "step"] = "epoch",
    warmup_epochs: Annotated[float, Ge(0), Le(100_000)] = 0,
    warmup_start: Annotated[float, Gt(0), Le(1)] = 0.1,
    monitor: str | None = None,
) -> None:
    """The ``scheduler`` group's options: ``scheduler`` (torch's schedule, a ``_partial_``
    ``_target_``, or null), its ``interval``, the metric it watches (``plateau``), and a linear
    warmup over ``warmup_epochs`` from ``warmup_start`` times the rate."""


def build_schedule(
    optimizer: Optimizer, cfg: Mapping[str, Any], total_steps: float, steps_per_epoch: int
) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` dict for ``cfg``, or None for a constant learning rate.

    Args:
        cfg: ``scheduler`` (a ``_partial_`` config or null), ``interval`` (epoch | step),
            ``monitor``, ``warmup_epochs`` and ``warmup_start`` (the first step's share of lr).
        total_steps: optimizer steps in the whole run (inf for a run without an end).
        steps_per_epoch: optimizer steps in one epoch.
    """
    check_options(schedule_options, cfg, "scheduler")
    interval = cfg.get("interval", "epoch")
    if steps_per_epoch < 1:
        raise ConfigError(
            "an epoch has no training batch: the training set is smaller than one batch "
            "(with mixup, batches must be full) or trainer.limit_train_batches is 0"
        )
    per_unit = steps_per_epoch if interval == "step" else 1
    warmup = _warmup_length(cfg.get("warmup_epochs", 0) or 0, per_unit, interval)
    main_cfg = dict(cfg.get("scheduler") or {})
    if not main_cfg and not warmup:
        return None
    plateau = main_cfg.get("_target_", "").endswith("ReduceLROnPlateau")
    if plateau and interval == "step":
        raise ConfigError(
            "scheduler.interval=step: scheduler=plateau watches a metric of each epoch; "
            "use scheduler.interval=epoch"
        )
    if warmup and (plateau or "total_steps" in main_cfg):
        raise ConfigError(
            "scheduler.warmup_epochs works with every schedule but plateau and "
            "onecycle (which has its own warmup)"
        )
    if main_cfg:
        run_length = total_steps
        if interval == "epoch" and math.isfinite(total_steps):
            run_length = math.ceil(total_steps / steps_per_epoch)
        main_cfg = _in_units(main_cfg, per_unit, run_length)
        if "max_lr" in main_cfg:  # OneCycleLR's one peak would be every group's
            main_cfg["max_lr"] = _per_group(main_cfg["max_lr"], optimizer)
    main = build(main_cfg)(optimizer) if main_cfg else ConstantLR(optimizer, 1.0, 0)
    if warmup:
        main = Warmup(optimizer, main, warmup, cfg.get("warmup_start", 0.1))
    schedule = {"scheduler": main, "interval": interval}
    if cfg.get("monitor"):
        schedule["monitor"] = cfg["monitor"]
    return schedule


def _per_group(max_lr: Any, optimizer: Optimizer) -> Any:
    """A peak rate for each parameter group: one whose rate is a share of the optimizer's
    (fine-tuning's body, cnnlab.training.finetune) peaks at that share of ``max_lr``."""
    base = optimizer.defaults.get("lr")
    if not isinstance(max_lr, int | float) or not base:
        return max_lr
    rates = [group["lr"] for group in optimizer.param_groups]
    return [max_lr if rate == base else max_lr * (rate / base) for rate in rates]


def _warmup_length(epochs: float, per_unit: int, interval: str) -> int:
    """The warmup in the schedule's own steps."""
    if interval == "step":
        return max(1, round(epochs * per_unit)) if epochs else 0
    if not math.isclose(epochs, round(epochs)):
        raise ConfigError(
            f"scheduler.warmup_epochs={epochs} is not a whole number of epochs: "
            "with scheduler.interval=step it may be a fraction"
        )
    return round(epochs)


def _in_units(cfg: dict[str, Any], per_unit: int, run_length: float) -> dict[str, Any]:
    """The schedule's arguments in its own steps: epoch counts times ``per_unit``, per-epoch
    rates to the ``per_unit``-th root, and null lengths filled with the run's length."""
    name = cfg["_target_"].rsplit(".", 1)[-1]
    if per_unit > 1:
        if name not in EPOCH_ARGS:
            raise ConfigError(
                f"scheduler.interval=step: cnnlab does not know which arguments of {name} count "
                f"epochs; use interval=epoch (step works with {', '.join(EPOCH_ARGS)})"
            )
        for arg, kind in EPOCH_ARGS[name].items():
            if cfg.get(arg) is None:
                continue
            if kind == "rate":
                cfg[arg] = cfg[arg] ** (1 / per_unit)
            elif isinstance(cfg[arg], list):
                cfg[arg] = [value * per_unit for value in cfg[arg]]
            else:
                cfg[arg] = cfg[arg] * per_unit
    for arg in RUN_LENGTH_ARGS:
        if arg in cfg and cfg[arg] is None:
            if not math.isfinite(run_length):
                raise ConfigError(
                    "this schedule needs the run's length: set trainer.max_epochs or "
                    "trainer.max_steps"
                )
            cfg[arg] = int(run_length)
    return cfg
