"""Checks a config passes before anything is built, each failure one ConfigError line naming the
setting, the value and what is accepted: ``check_declared`` holds each node against its
declaration (``cnnlab.options``), the others the relations no single declaration can state."""

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, NamedTuple

from hydra.errors import HydraException
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from cnnlab import registry
from cnnlab.config import source
from cnnlab.config.declared import DECLARED, declaration
from cnnlab.config.job import by_submitit, in_sweep, launcher
from cnnlab.errors import ConfigError, first_line
from cnnlab.options import Natural, Probability, check_options, parameters, shown
from cnnlab.registry import build, target_nodes

log = logging.getLogger(__name__)


def top_options(
    seed: Natural = 42,
    reference: dict[str, Probability | str] | None = None,  # a study's figures, and its source
    resume: str | None = None,
    matmul_precision: Literal["highest", "high", "medium"] = "highest",
    task_name: str = "train",
) -> None:
    """The options at the top of ``train.yaml`` that the run reads itself (the rest: Classifier)."""


# What reads each part of the training config: its signature declares the part's options. By
# dotted name: imported to check a config, read from the source for --help (cnnlab.config.source).
TOP = ("cnnlab.run.checks.top_options", "cnnlab.training.module.Classifier")
DATA = "cnnlab.data.datamodule.ImageDataModule"
# Where a config names a registered component (``{name: elu, ...}``): its kind, and what reads
# the node's other options (a model's layout, an init's weights, a schedule's warmup).
REGISTERED = {
    "model": ("model", "cnnlab.models.build.layout"),
    "activation": ("activation", None),
    "norm": ("norm", None),
    "init": ("init", "cnnlab.models.pretrained.load_pretrained"),
    "scheduler": ("scheduler", "cnnlab.training.schedules.Scheduling"),
    "preprocess": ("preprocess", None),
    "data.dataset": ("data", None),
}
GROUPS = {
    "regularizer": "cnnlab.training.regularizers.Regularizer",
    "augment": "cnnlab.data.augment.Augmentation",
    "diagnose": "cnnlab.results.diagnosis.Thresholds",
    "finetune": "cnnlab.training.finetune.Finetuning",
}


class Imported:
    """Declarations as the objects themselves (importing the components loads torch)."""

    def of(self, dotted: str) -> Callable:
        return get_object(dotted)

    def registered(self, kind: str) -> dict[str, Callable]:
        return {name: registry.lookup(kind, name) for name in registry.names(kind)}

    def target(self, target: str) -> Callable | None:
        return declaration(target)


class FromSource(Imported):
    """Declarations read from their source files (``--help``: no torch to import)."""

    def of(self, dotted: str) -> Callable:
        return source.declaration(dotted)

    def registered(self, kind: str) -> dict[str, Callable]:
        return source.registered(kind)

    def target(self, target: str) -> Callable | None:
        if target in DECLARED or not target.startswith("cnnlab."):
            return declaration(target)
        return source.declaration(target) or source.Declared(target, [])  # (no __init__)


class Node(NamedTuple):
    """A config node and what declares its options."""

    where: str  # its place in the config: "model", "callbacks.lr_monitor", "" for the top
    declaration: Callable
    options: Mapping[str, Any]
    supplied: tuple[str, ...] = ()  # what the code passes itself; the config may not set it
    name: str | None = None  # the registered name (activation=elu), for the messages


def declared_nodes(plain: Mapping[str, Any], read: Imported | None = None) -> Iterator[Node]:
    """Each node of a composed config (plain values) with its declaration, ``_target_`` nodes
    wherever they are; a node nothing declares (a user's own ``_target_``) is left out."""
    read = read or Imported()
    top = [read.of(dotted) for dotted in TOP]  # (the Classifier's groups: their own nodes too)
    yield Node("", top[0], {k: plain[k] for k in parameters(top[0]) if k in plain})
    data = {k: v for k, v in plain["data"].items() if k != "dataset"}
    yield Node("data", read.of(DATA), data, ("augment", "preprocess"))
    for where, (kind, own) in REGISTERED.items():
        group, _, key = where.partition(".")
        found = read.registered(kind)
        node = _registered(
            kind, where, plain.get(group, {}).get(key) if key else plain.get(group), found
        )
        name = node.pop("name")
        if own is not None:
            declared = read.of(own)
            yield Node(where, declared, {k: node.pop(k) for k in parameters(declared) if k in node})
        yield Node(where, found[name], node, (), name)
    for group, dotted in GROUPS.items():
        if group in plain:
            yield Node(group, read.of(dotted), plain[group] or {})
    for declared in top[1:]:
        yield Node("", declared, {k: plain[k] for k in parameters(declared) if k in plain})
    for where, node in target_nodes(plain):
        declared = read.target(str(node["_target_"]))
        if declared is not None:
            yield Node(where, declared, node, ("params", "optimizer"))


def _registered(kind: str, where: str, node: Any, found: Mapping[str, Any]) -> dict[str, Any]:
    """A node that names a registered component (``{name: elu, alpha: 1.0}``), as a copy."""
    choices = sorted(found)
    if not isinstance(node, Mapping) or not isinstance(node.get("name"), str):
        raise ConfigError(
            f"{where}={shown(node)}: expected a mapping with a name, one of: {', '.join(choices)}"
        )
    if node["name"] not in choices:
        raise ConfigError(
            f"{where}.name={node['name']}: no such {kind}; choose from: {', '.join(choices)}"
        )
    return dict(node)


def check_declared(cfg: DictConfig) -> None:
    """Every option of ``cfg`` against its declaration (``declared_nodes``)."""
    for node in declared_nodes(OmegaConf.to_container(cfg, resolve=True)):
        check_options(node.declaration, node.options, node.where, node.supplied, node.name)
    if cfg.trainer.get("max_epochs") == -1 and cfg.trainer.get("max_steps") in (None, -1):
        raise ConfigError("trainer.max_epochs=-1 needs trainer.max_steps > 0: the run has no end")


def check_optimizer(cfg: DictConfig) -> None:
    """Build the optimizer on a stand-in parameter, so that its own checks (Adam's betas, ...)
    fail now, in one line, rather than when training starts."""
    import torch  # here: the other checks run before torch is loaded (python src/train.py -h)

    try:
        build(cfg.optimizer)(params=[torch.zeros(1, requires_grad=True)])
    except (TypeError, ValueError, RuntimeError, HydraException) as err:
        target = cfg.optimizer.get("_target_", "?")
        raise ConfigError(f"optimizer ({target}) cannot be built: {first_line(err)}") from None


def check_schedule(cfg: DictConfig) -> None:
    """Build the schedule on a stand-in optimizer: what its options cannot do together (plateau
    per batch, a warmup before onecycle) fails now, before the run directory holds its logs."""
    import torch

    from cnnlab.training.schedules import build_schedule

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = OmegaConf.to_container(cfg.scheduler, resolve=True)
    try:  # the lengths are stand-ins: only the epoch counts' relations to each other matter
        build_schedule(optimizer, scheduler, total_steps=100.0, steps_per_epoch=10)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(
            f"scheduler={scheduler['name']} cannot be built: {first_line(err)}"
        ) from None


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
        held_out = cfg.data.val_split or cfg.data.get("folds")
        if monitor.startswith("val/") and not held_out and not checkpoint:
            raise ConfigError(
                f"{where} watches {monitor}, which needs data.val_split > 0 (or data.folds)"
            )


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
    check_declared(cfg)
    check_optimizer(cfg)
    check_schedule(cfg)
    check_monitors(cfg)
    check_strategy(cfg)
    check_finetune(cfg)


def check_finetune(cfg: DictConfig) -> None:
    """Refuse what fine-tuning's options cannot do together, in one line; freezing without
    ``init.checkpoint`` is allowed (a random body under a trained head is a baseline), and said."""
    from cnnlab.training.finetune import Finetuning

    tune = Finetuning(**OmegaConf.to_container(cfg.finetune))
    freeze, unfreeze_at = tune.freeze, tune.unfreeze_at
    if unfreeze_at is not None and freeze is None:
        raise ConfigError(
            f"finetune.unfreeze_at={unfreeze_at} needs finetune.freeze: nothing is frozen"
        )
    if freeze == "all" and unfreeze_at is None and tune.body_lr != 1.0:
        raise ConfigError(
            f"finetune.body_lr={tune.body_lr} with finetune.freeze=all: the body never "
            "trains; set finetune.unfreeze_at, or leave body_lr at 1"
        )
    epochs = cfg.trainer.get("max_epochs")
    if unfreeze_at is not None and isinstance(epochs, int) and 0 < epochs <= unfreeze_at:
        raise ConfigError(
            f"finetune.unfreeze_at={unfreeze_at}: the run ends before it "
            f"(trainer.max_epochs={epochs}; epochs count from 0)"
        )
    if unfreeze_at is not None and several_processes(cfg.trainer):
        # DDP takes the parameters that need a gradient when it wraps the model; ones unfrozen
        # later would train on each process apart, never averaged.
        trainer = cfg.trainer
        raise ConfigError(
            f"finetune.unfreeze_at with several processes (trainer.strategy="
            f"{trainer.get('strategy', 'auto')}, trainer.devices={trainer.get('devices')}): DDP "
            "only averages the parameters that train from the start; freeze without "
            "unfreezing, or train on one device"
        )
    if freeze is not None and not cfg.init.checkpoint:
        log.warning(
            "finetune.freeze without init.checkpoint: the frozen parts keep their random init"
        )


def several_processes(trainer: Mapping[str, Any]) -> bool:
    """Whether the ``trainer`` node trains in several processes (DDP, or several devices)."""
    devices = trainer.get("devices", 1)
    ddp = "ddp" in str(trainer.get("strategy") or "")
    return ddp or (isinstance(devices, int) and (devices > 1 or devices == -1))


def relaunches_script(cfg: DictConfig) -> bool:
    """DDP whose other ranks Lightning starts by running the script again (Lightning #11300);
    ddp_spawn and ddp_fork start them from this process instead."""
    strategy = str(cfg.trainer.get("strategy") or "")
    return strategy.startswith("ddp") and not any(s in strategy for s in ("spawn", "fork"))
