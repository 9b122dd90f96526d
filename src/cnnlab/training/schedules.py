"""Learning-rate schedules chosen by name (``scheduler=cosine``), each building torch's own, with
an optional linear warmup in front; ``others`` are options of torch's class passed on unchecked.
Lengths are always in epochs (``T_max``, ``milestones``, ``step_size``, ``T_0``) and rates per
epoch (``gamma``), also with ``interval: step``: ``Steps`` converts them to optimizer steps."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_schedules

from cnnlab import registry
from cnnlab.errors import ConfigError
from cnnlab.options import Count, Natural, NonNegative, Positive, Supplied, read
from cnnlab.registry import register

Decay = Annotated[float, Gt(0), Le(1)]  # a factor that shrinks the rate


@dataclass(frozen=True)
class Steps:
    """The run as a schedule counts it: ``per_epoch`` of its steps an epoch (1 when it steps
    once an epoch), ``total`` in the whole run (inf for a run without an end)."""

    per_epoch: int
    total: float

    def of(self, epochs: int | None) -> int:
        """``epochs`` in the schedule's steps; None: the whole run."""
        if epochs is not None:
            return epochs * self.per_epoch
        if not math.isfinite(self.total):
            raise ConfigError(
                "this schedule needs the run's length: set trainer.max_epochs or trainer.max_steps"
            )
        return int(self.total)

    def rate(self, per_epoch: float) -> float:
        """A factor per epoch, as the factor per step that compounds to it over an epoch."""
        return per_epoch ** (1 / self.per_epoch)


class Warmup(torch_schedules.LRScheduler):
    """Scale the first ``steps`` rates of ``main`` by a factor rising linearly from ``start``
    to 1. ``main`` counts from the first step as if there were no warmup (timm's schedulers do
    not shift theirs either), so only the start of the run changes."""

    def __init__(self, optimizer: Optimizer, main, steps: int, start: float):
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


@dataclass(frozen=True)
class Scheduling:
    """The ``scheduler`` group's own options beside the schedule's: a linear warmup from
    ``warmup_start`` times the rate, and the metric that ``plateau`` watches."""

    interval: Literal["epoch", "step"] = "epoch"
    warmup_epochs: Annotated[float, Ge(0), Le(100_000)] = 0
    warmup_start: Annotated[float, Gt(0), Le(1)] = 0.1
    monitor: str | None = None


OWN = tuple(Scheduling.__dataclass_fields__)


def build_schedule(
    optimizer: Optimizer, spec: Mapping[str, Any], total_steps: float, steps_per_epoch: int
) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` dict for the ``scheduler`` node ``spec`` (None: a constant
    rate); ``total_steps`` (inf: no end) and ``steps_per_epoch`` count optimizer steps."""
    own = read(Scheduling, {k: v for k, v in spec.items() if k in OWN}, "scheduler")
    if steps_per_epoch < 1:
        raise ConfigError(
            "an epoch has no training batch: the training set is smaller than one batch "
            "(with mixup, batches must be full) or trainer.limit_train_batches is 0"
        )
    if own.interval == "epoch":
        steps = Steps(1, math.ceil(total_steps / steps_per_epoch))
    else:
        steps = Steps(steps_per_epoch, total_steps)
    make = registry.factory("scheduler", {k: v for k, v in spec.items() if k not in OWN})
    warmup = _warmup_length(own.warmup_epochs, steps.per_epoch, own.interval)
    if warmup and not getattr(make.func, "warms_up", True):
        raise ConfigError(
            f"scheduler.warmup_epochs works with every schedule but {spec['name']}, which "
            "cannot be warmed up (onecycle has its own warmup; plateau watches a metric)"
        )
    main = registry.supply(make, optimizer=optimizer, steps=steps, interval=own.interval)
    if main is None and not warmup:
        return None
    main = main or torch_schedules.ConstantLR(optimizer, 1.0, 0)
    if warmup:
        main = Warmup(optimizer, main, warmup, own.warmup_start)
    schedule = {"scheduler": main, "interval": own.interval}
    if own.monitor:
        schedule["monitor"] = own.monitor
    return schedule


def _warmup_length(epochs: float, per_epoch: int, interval: str) -> int:
    if interval == "step":
        return max(1, round(epochs * per_epoch)) if epochs else 0
    if not math.isclose(epochs, round(epochs)):
        raise ConfigError(
            f"scheduler.warmup_epochs={epochs} is not a whole number of epochs: "
            "with scheduler.interval=step it may be a fraction"
        )
    return round(epochs)


@register("scheduler", "none")
def constant(optimizer: Supplied[Optimizer]) -> None:
    """A constant rate (after the warmup, if any)."""


@register("scheduler", "cosine")
def cosine(
    optimizer: Supplied[Optimizer],
    steps: Supplied[Steps],
    T_max: Count | None = None,
    eta_min: NonNegative = 0.0,
    **others: Any,
):
    """Cosine decay from the rate to ``eta_min`` over ``T_max`` epochs (null: the whole run)."""
    return torch_schedules.CosineAnnealingLR(optimizer, steps.of(T_max), eta_min, **others)


@register("scheduler", "cosine_restarts")
def cosine_restarts(
    optimizer: Supplied[Optimizer],
    steps: Supplied[Steps],
    T_0: Count = 20,
    T_mult: Count = 1,
    eta_min: NonNegative = 0.0,
    **others: Any,
):
    """Cosine decay over ``T_0`` epochs, then a restart; each cycle ``T_mult`` times the last."""
    return torch_schedules.CosineAnnealingWarmRestarts(
        optimizer, steps.of(T_0), T_mult, eta_min, **others
    )


@register("scheduler", "exponential")
def exponential(
    optimizer: Supplied[Optimizer], steps: Supplied[Steps], gamma: Decay = 0.9, **others: Any
):
    """The rate times ``gamma`` every epoch."""
    return torch_schedules.ExponentialLR(optimizer, steps.rate(gamma), **others)


@register("scheduler", "step")
def step(
    optimizer: Supplied[Optimizer],
    steps: Supplied[Steps],
    step_size: Count = 20,
    gamma: Decay = 0.1,
    **others: Any,
):
    """The rate times ``gamma`` every ``step_size`` epochs."""
    return torch_schedules.StepLR(optimizer, steps.of(step_size), gamma, **others)


@register("scheduler", "multistep")
def multistep(
    optimizer: Supplied[Optimizer],
    steps: Supplied[Steps],
    milestones: list[Count] = (),
    gamma: Decay = 0.1,
    **others: Any,
):
    """The rate times ``gamma`` at each of the ``milestones`` (epochs)."""
    milestones = [steps.of(m) for m in milestones]
    return torch_schedules.MultiStepLR(optimizer, milestones, gamma, **others)


@register("scheduler", "onecycle")
def onecycle(
    optimizer: Supplied[Optimizer],
    steps: Supplied[Steps],
    max_lr: Positive | None = None,
    total_steps: Count | None = None,
    pct_start: Annotated[float, Gt(0), Lt(1)] = 0.3,
    anneal_strategy: Literal["cos", "linear"] = "cos",
    div_factor: Positive = 25.0,
    final_div_factor: Positive = 1e4,
    three_phase: bool = False,
    **others: Any,
):
    """Smith's one cycle: up to ``max_lr`` (null: the optimizer's rate; a group at a share of the
    rate peaks at that share) over the first ``pct_start`` of ``total_steps`` (null: the whole
    run), then down to ``max_lr / (div_factor * final_div_factor)``."""
    base = optimizer.defaults["lr"]
    peak = max_lr or base
    peaks = [peak * group["lr"] / base for group in optimizer.param_groups]
    return torch_schedules.OneCycleLR(
        optimizer,
        peaks,
        total_steps=total_steps or steps.of(None),
        pct_start=pct_start,
        anneal_strategy=anneal_strategy,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        three_phase=three_phase,
        **others,
    )


onecycle.warms_up = False  # it has a warmup of its own


@register("scheduler", "plateau")
def plateau(
    optimizer: Supplied[Optimizer],
    interval: Supplied[str],
    mode: Literal["min", "max"] = "min",
    factor: Annotated[float, Gt(0), Lt(1)] = 0.1,
    patience: Natural = 10,
    threshold: NonNegative = 1e-4,
    cooldown: Natural = 0,
    min_lr: NonNegative = 0.0,
    **others: Any,
):
    """The rate times ``factor`` after ``patience`` epochs with no better ``scheduler.monitor``."""
    if interval == "step":
        raise ConfigError(
            "scheduler.interval=step: scheduler=plateau watches a metric of each epoch; "
            "use scheduler.interval=epoch"
        )
    return torch_schedules.ReduceLROnPlateau(
        optimizer, mode, factor, patience, threshold, cooldown=cooldown, min_lr=min_lr, **others
    )


plateau.warms_up = False  # it watches a metric: a warmup would hide what it sees
