"""Checks a config passes before anything is built: each failure is one ConfigError line that
names the setting, the value and what is accepted.

Ranges that the data module or the model check themselves (val_split, batch_size, mixup's
alphas, dropout) are not repeated here.
"""

import difflib
from collections.abc import Callable
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from cnnlab.errors import ConfigError
from cnnlab.sweep import by_submitit, in_sweep, launcher
from cnnlab.targets import build

# key: (type, test, what is accepted). A key the config does not have is skipped.
RANGES: dict[str, tuple[type, Callable, str]] = {
    "seed": (int, lambda v: v >= 0, "an integer >= 0"),
    "label_smoothing": (float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.lr": (float, lambda v: v > 0, "a number > 0"),
    "optimizer.weight_decay": (float, lambda v: v >= 0, "a number >= 0"),
    "optimizer.momentum": (float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "trainer.max_epochs": (
        int,
        lambda v: v >= 1 or v == -1,
        "an integer >= 1, or -1 with trainer.max_steps > 0",
    ),
    "trainer.max_steps": (int, lambda v: v >= 1 or v == -1, "an integer >= 1, or -1 (no limit)"),
    "data.eval_batch_size": (int, lambda v: v >= 1, "an integer >= 1 or null"),
    "data.image_size": (int, lambda v: v >= 1, "an integer >= 1"),
    "data.in_channels": (int, lambda v: v >= 1, "an integer >= 1"),
    "data.num_classes": (int, lambda v: v >= 2, "an integer >= 2"),
    "scheduler.warmup_epochs": (float, lambda v: v >= 0, "a number >= 0"),
    "regularizer.l1": (float, lambda v: v >= 0, "a number >= 0"),
    "regularizer.l2": (float, lambda v: v >= 0, "a number >= 0"),
}


def check_ranges(cfg: DictConfig) -> None:
    for key, (kind, test, accepted) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        # bool is an int to Python, but trainer.max_epochs=true is a mistake
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is int:
            ok = ok and float(value).is_integer()
        if not (ok and test(value)):
            raise ConfigError(f"{key}={value}: expected {accepted}")
    if cfg.trainer.get("max_epochs") == -1 and cfg.trainer.get("max_steps", -1) == -1:
        raise ConfigError("trainer.max_epochs=-1 needs trainer.max_steps > 0: the run has no end")


def check_optimizer(cfg: DictConfig) -> None:
    """Build the optimizer on a stand-in parameter, so that its own checks (Adam's betas, ...)
    fail now, in one line, rather than when training starts."""
    import torch  # here: the other checks run before torch is loaded (python src/train.py -h)

    try:
        build(cfg.optimizer)(params=[torch.zeros(1, requires_grad=True)])
    except (TypeError, ValueError, HydraException) as err:
        raise ConfigError(f"optimizer: {_first_line(err)}") from None


def check_monitors(cfg: DictConfig) -> None:
    """What callbacks and schedules watch must exist, and never be the test set."""
    callbacks = {name: c for name, c in cfg.callbacks.items() if c}
    watchers = {f"callbacks.{name}": c.get("monitor") for name, c in callbacks.items()}
    watchers["the schedule"] = cfg.scheduler.get("monitor")
    for where, monitor in watchers.items():
        monitor = str(monitor or "")
        if monitor.startswith("val_on_test/"):
            raise ConfigError(
                f"{where} watches {monitor}: nothing may be chosen or scheduled on the test set"
            )
        # Checkpoints adapt (they keep the last epoch); the rest cannot do without the metric.
        checkpoint = "save_top_k" in callbacks.get(where.removeprefix("callbacks."), {})
        if monitor.startswith("val/") and not cfg.data.val_split and not checkpoint:
            raise ConfigError(f"{where} watches {monitor}, which needs data.val_split > 0")


def check_strategy(cfg: DictConfig) -> None:
    own_processes = launcher().endswith("GpusLauncher") or by_submitit()
    if relaunches_script(cfg) and in_sweep() and not own_processes:
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.strategy} starts its other processes by running the "
            "command line again, which inside -m would run the whole sweep again: use "
            "hydra/launcher=gpus with hydra.launcher.gpus_per_job=N (or hydra/launcher=slurm)"
        )


def check(cfg: DictConfig) -> None:
    """Everything that can be checked before the data is loaded and the model built."""
    reference = cfg.get("reference")
    if reference is not None and not isinstance(reference, DictConfig):
        raise ConfigError(
            f"reference must be a mapping such as {{test_acc: 0.9167, source: 'seed 002, "
            f"Table 2'}}, got {reference!r}"
        )
    check_ranges(cfg)
    check_optimizer(cfg)
    check_monitors(cfg)
    check_strategy(cfg)


def relaunches_script(cfg: DictConfig) -> bool:
    """DDP whose other ranks Lightning starts by running the script again (Lightning #11300);
    ddp_spawn and ddp_fork start them from this process instead."""
    strategy = str(cfg.trainer.get("strategy") or "")
    return strategy.startswith("ddp") and not any(s in strategy for s in ("spawn", "fork"))


def check_choices(overrides: list[str], conf: Path) -> None:
    """``activation=relux`` on the command line: name the option that does not exist and the
    nearest one, before Hydra composes anything. Hydra's own groups and what does not parse
    are left to Hydra."""
    parser = OverridesParser.create()
    for line in overrides:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException:  # not an override (a flag's value), or one Hydra will explain
            continue
        group = override.key_or_group
        folder = conf / group
        if override.is_delete() or group.startswith("hydra") or not folder.is_dir():
            continue
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except HydraException:  # glob(...): Hydra matches it against the options
                continue
        else:
            values = [override.value()]
        options = sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))
        for value in values:
            if value is None or str(value) in options or str(value) == "null":
                continue
            near = difflib.get_close_matches(str(value), options, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise ConfigError(
                f"{group}={value}: no such option; {hint}choose from: {', '.join(options)}"
            )


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
