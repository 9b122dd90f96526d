"""What decides a run's result: every setting of its config but a short list that cannot change it
(README's "What decides a result"). The list is kept short on purpose, and what is not on it
counts (an EMA added between two attempts, ``trainer.precision``, ``compile``): ``resume=auto``
goes on only under the same settings, and the report pools only jobs differing in the seed alone."""

from collections.abc import Mapping
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

FREE = {
    "task_name",
    "reference",
    "resume",
    "paths",
    "logger",
    "hydra",
    "diagnose",
    "data.on_device",
    "data.cache_dir",
    "data.dataset.root",
    "data.dataset.cache_dir",
    "data.dataset.download",
    "data.dataset.verify",
    "trainer.accelerator",
    "trainer.default_root_dir",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
}
# Lightning's callbacks that only look; a class of cnnlab's own (or yours) says so itself with
# ``observes_only = True`` (the figures, summaries, snapshots).
OBSERVERS = {
    "lightning.pytorch.callbacks.DeviceStatsMonitor",
    "lightning.pytorch.callbacks.LearningRateMonitor",
    "lightning.pytorch.callbacks.ModelSummary",
    "lightning.pytorch.callbacks.RichModelSummary",
    "lightning.pytorch.callbacks.RichProgressBar",
    "lightning.pytorch.callbacks.TQDMProgressBar",
}
# Recorded beside the settings: what they cover. Records without it were written by an older
# cnnlab, which recorded a hand-picked few (resume compares only those).
SCOPE = "config"
# Interpolations that name a place on disk: their values differ between runs of one recipe.
PLACES = ("${paths.", "${hydra:")
# Options added after records began, at the value that does what cnnlab did before them: left
# out there, so that a run recorded before they existed still matches (resume, the report).
NEUTRAL = {
    "init.checkpoint": None,
    "finetune.freeze": None,
    "finetune.body_lr": 1.0,
    "finetune.unfreeze_at": None,
    "data.folds": None,
    "data.fold": None,
}
# Classes cnnlab moved, by their old ``_target_``: a run recorded before the move names them so.
MOVED = {"cnnlab.checkpoints.Checkpoint": "cnnlab.run.checkpoints.Checkpoint"}
# Schedules an earlier cnnlab named by their torch class (``scheduler.scheduler._target_``).
SCHEDULES = {
    "CosineAnnealingLR": "cosine",
    "CosineAnnealingWarmRestarts": "cosine_restarts",
    "ExponentialLR": "exponential",
    "StepLR": "step",
    "MultiStepLR": "multistep",
    "OneCycleLR": "onecycle",
    "ReduceLROnPlateau": "plateau",
}
# Data sets whose root is not where a data set lies but which one it is (your own images).
ROOT_IS_DATA = {"image_folder"}


def settings(cfg: DictConfig) -> dict[str, Any]:
    """Every setting of ``cfg`` that can change the result, resolved and flat (``{"optimizer.lr":
    0.1, ...}``); read value by value, so a saved ``.hydra/config.yaml`` needs no Hydra."""
    flat: dict[str, Any] = {}
    _walk(cfg, "", flat)
    if flat.get("data.dataset.name") in ROOT_IS_DATA:
        flat["data.dataset.root"] = cfg.data.dataset.root
    return {k: v for k, v in flat.items() if k not in NEUTRAL or v != NEUTRAL[k]}


def upgrade(recorded: dict[str, Any]) -> dict[str, Any]:
    """Settings an earlier cnnlab recorded (a metrics.json, a checkpoint), named as today's
    are: the runs of a recipe made before and after a rename still resume and pool."""
    upgraded = {}
    for key, value in recorded.items():
        if key == "scheduler.scheduler":  # scheduler=none, once a null schedule
            upgraded["scheduler.name"] = "none"
        elif key == "scheduler.scheduler._target_":
            upgraded["scheduler.name"] = SCHEDULES[str(value).rsplit(".", 1)[-1]]
        elif key.startswith("scheduler.scheduler."):
            if key != "scheduler.scheduler._partial_":
                upgraded[key.replace("scheduler.scheduler.", "scheduler.", 1)] = value
        else:
            upgraded[key] = MOVED.get(value, value) if key.endswith("._target_") else value
    return upgraded


def upgrade_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's Classifier arguments as today's Classifier takes them: an earlier
    cnnlab's gave the network's groups in one ``net`` node, and the schedule by its class."""
    upgraded = dict(hparams)
    net = upgraded.pop("net", None)
    if net is not None:
        upgraded |= {group: net[group] for group in ("model", "activation", "norm", "init")}
        shape = {key: net[key] for key in ("in_channels", "num_classes", "image_size")}
        on_test = upgraded.pop("val_stage", "val") == "val_on_test"
        upgraded["data"] = {**shape, "val_on_test": on_test}
    schedule = upgraded.get("scheduler")
    if isinstance(schedule, Mapping) and "scheduler" in schedule:
        flat = {f"scheduler.{k}": v for k, v in schedule.items() if k != "scheduler"}
        inner = schedule["scheduler"]
        if inner is None:
            flat["scheduler.scheduler"] = None
        else:
            flat |= {f"scheduler.scheduler.{k}": v for k, v in inner.items()}
        upgraded["scheduler"] = {k.split(".", 1)[1]: v for k, v in upgrade(flat).items()}
    return upgraded


def _walk(node: DictConfig, prefix: str, flat: dict[str, Any]) -> None:
    for key in node:
        place = f"{prefix}{key}"
        if place in FREE or (prefix == "callbacks." and _no_setting(node, key)):
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            _walk(child, f"{place}.", flat)
            continue
        raw = child._value() if not isinstance(child, ListConfig) else None
        if isinstance(raw, str) and any(p in raw for p in PLACES):
            continue  # a place on disk
        value = node[key]
        flat[place] = (
            OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        )


def _no_setting(callbacks: DictConfig, key: str) -> bool:
    """A callback switched off (``callbacks.curves=null``), or one that only looks."""
    node = callbacks._get_node(key)
    if node is None or node._is_none():
        return True
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if target is None or target in OBSERVERS:
        return target is not None
    try:
        return bool(getattr(get_class(str(target)), "observes_only", False))
    except Exception:  # a class that cannot be imported here: counted, to be safe
        return False
