"""Checks a config passes before anything is built: each failure is one ConfigError line that
names the setting, the value and what is accepted.

Every option is declared once, where it is used (``cnnlab.options`` says how); ``check_declared``
holds each node of a composed config against its declaration. What is left here are the
relations between options that no single declaration can state.
"""

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, NamedTuple

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from cnnlab.config.declared import declaration
from cnnlab.config.job import by_submitit, in_sweep, launcher
from cnnlab.errors import ConfigError, first_line
from cnnlab.options import Fraction, Natural, Probability, check_options, parameters, shown
from cnnlab.registry import build, target_nodes

log = logging.getLogger(__name__)


def top_options(
    seed: Natural = 42,
    label_smoothing: Fraction = 0.0,
    reference: dict[str, Probability | str] | None = None,  # a study's figures, and its source
    resume: str | None = None,
    compile: bool = False,
    matmul_precision: Literal["highest", "high", "medium"] = "highest",
    task_name: str = "train",
) -> None:
    """The options at the top of ``train.yaml``; the groups are declared where they are used."""


# The groups that name a registered component (``{name: elu, ...}``): its arguments are their
# options, but for those it declares Supplied.
REGISTERED = ("model", "activation", "norm", "init")


def group_declarations() -> dict[str, Any]:
    """The plain groups' declarations (imported here: they load torch)."""
    from cnnlab.data.datamodule import augment_options
    from cnnlab.data.preprocess import preprocess_options
    from cnnlab.results.diagnosis import Thresholds
    from cnnlab.training.finetune import finetune_options
    from cnnlab.training.regularizers import regularizer_options
    from cnnlab.training.schedules import schedule_options

    return {
        "scheduler": schedule_options,
        "regularizer": regularizer_options,
        "augment": augment_options,
        "preprocess": preprocess_options,
        "diagnose": Thresholds,
        "finetune": finetune_options,
    }


def model_layout(channels_last: bool = False) -> None:
    """``model.channels_last``: how build_model stores any model's weights, not a model's own."""


def init_weights(checkpoint: str | None = None) -> None:
    """``init.checkpoint``: a file's weights, loaded over any init (cnnlab.models.pretrained)."""


class Node(NamedTuple):
    """A config node and what declares its options."""

    where: str  # its place in the config: "model", "callbacks.lr_monitor", "" for the top
    declaration: Callable
    options: Mapping[str, Any]
    supplied: tuple[str, ...] = ()  # what the code passes itself; the config may not set it
    name: str | None = None  # the registered name (activation=elu), for the messages


def declared_nodes(plain: Mapping[str, Any]) -> Iterator[Node]:
    """Each node of a composed config (as plain values) with its declaration: the top level,
    the registered components, the plain groups, the data, and every ``_target_`` node
    wherever it is. A node nothing here declares (a user's own ``_target_``) is left out."""
    from cnnlab import registry
    from cnnlab.data.datamodule import ImageDataModule

    yield Node("", top_options, {k: v for k, v in plain.items() if k in parameters(top_options)})
    for group in REGISTERED:
        node = _registered(group, group, plain.get(group))
        if group == "model":
            yield Node("model", model_layout, {"channels_last": node.pop("channels_last", False)})
        if group == "init":
            yield Node("init", init_weights, {"checkpoint": node.pop("checkpoint", None)})
        options = {k: v for k, v in node.items() if k != "name"}
        fn = registry.lookup(group, node["name"])
        yield Node(group, fn, options, (), node["name"])
    for group, declared in group_declarations().items():
        if group in plain:
            yield Node(group, declared, plain[group] or {})
    data = dict(plain["data"])
    dataset = _registered("data", "data.dataset", data.pop("dataset", None))
    yield Node("data", ImageDataModule, data, ("augment", "preprocess"))
    options = {k: v for k, v in dataset.items() if k != "name"}
    fn = registry.lookup("data", dataset["name"])
    yield Node("data.dataset", fn, options, (), dataset["name"])
    for where, node in target_nodes(plain):
        declared = declaration(str(node["_target_"]))
        if declared is not None:
            yield Node(where, declared, node, ("params", "optimizer"))


def _registered(kind: str, where: str, node: Any) -> dict[str, Any]:
    """A node that names a registered component (``{name: elu, alpha: 1.0}``), as a copy."""
    from cnnlab import registry

    choices = registry.names(kind)
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
    if cfg.trainer.get("max_epochs") == -1 and cfg.trainer.get("max_steps", -1) == -1:
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
    """Build the schedule on a stand-in optimizer, so that what its options cannot do together
    (plateau stepped per batch, a warmup in front of onecycle) is refused now, not when
    training starts (when the run directory already holds its logs)."""
    import torch

    from cnnlab.training.schedules import build_schedule

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = OmegaConf.to_container(cfg.scheduler, resolve=True) or {}
    try:  # the lengths are stand-ins: only the epoch counts' relations to each other matter
        build_schedule(optimizer, scheduler, total_steps=100.0, steps_per_epoch=10)
    except (TypeError, ValueError, RuntimeError, HydraException) as err:
        target = (scheduler.get("scheduler") or {}).get("_target_", "?")
        raise ConfigError(f"scheduler ({target}) cannot be built: {first_line(err)}") from None


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
    tune = cfg.get("finetune") or {}
    freeze, unfreeze_at = tune.get("freeze"), tune.get("unfreeze_at")
    if unfreeze_at is not None and freeze is None:
        raise ConfigError(
            f"finetune.unfreeze_at={unfreeze_at} needs finetune.freeze: nothing is frozen"
        )
    if freeze == "all" and unfreeze_at is None and tune.get("body_lr", 1.0) != 1.0:
        raise ConfigError(
            f"finetune.body_lr={tune['body_lr']} with finetune.freeze=all: the body never "
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
    if freeze is not None and not (cfg.get("init") or {}).get("checkpoint"):
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
