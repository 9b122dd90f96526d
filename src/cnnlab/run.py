"""One training run from a composed config: build, fit, test, write metrics.json."""

import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax

from cnnlab.data import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.files import write_json
from cnnlab.models import count_parameters
from cnnlab.module import Classifier


def run(cfg: DictConfig) -> float | None:
    """Train and test ``cfg``; return the best validation accuracy (for sweeps to rank by)."""
    Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))
    L.seed_everything(cfg.seed, workers=True)
    check(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.setup()  # load now: a missing data set fails before anything is built
    module = build_module(cfg)
    select = datamodule.has_validation  # a held-out split to pick the best epoch on
    trainer = build_trainer(cfg, select_best=select)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    ckpt = _tested_checkpoint(trainer, select)
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt or None)[0]
    metrics = {
        "best_val_acc": _score(trainer.checkpoint_callback) if select else None,
        "test_acc": tested["test/acc"],
        "test_loss": tested["test/loss"],
        "epochs": trainer.current_epoch,
        "wall_time_s": round(time.perf_counter() - start, 2),
        "params": count_parameters(module.net),
        "checkpoint": ckpt or None,
        "choices": _choices(),
        "seed": cfg.seed,
        "reference": _plain(cfg.get("reference")) or None,
    }
    write_json(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    return metrics["best_val_acc"]


def check(cfg: DictConfig) -> None:
    """Mistakes that would otherwise surface only after the first epoch."""
    monitor = cfg.scheduler.get("monitor") or ""
    if monitor.startswith("val/") and not cfg.data.val_split:
        raise ConfigError(f"the schedule watches {monitor}, which needs data.val_split > 0")


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    return ImageDataModule(
        **_plain(cfg.data), augment=_plain(cfg.augment), preprocess=_plain(cfg.preprocess)
    )


def build_module(cfg: DictConfig) -> Classifier:
    net = {
        "model": _plain(cfg.model),
        "activation": _plain(cfg.activation),
        "norm": _plain(cfg.norm),
        "init": _plain(cfg.init),
        "in_channels": cfg.data.in_channels,
        "num_classes": cfg.data.num_classes,
        "image_size": cfg.data.image_size,
    }
    return Classifier(
        net=net,
        optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.scheduler),
        regularizer=_plain(cfg.regularizer),
        label_smoothing=cfg.label_smoothing,
        val_stage="val_on_test" if cfg.data.get("val_on_test") else "val",
    )


def build_trainer(cfg: DictConfig, select_best: bool = True) -> L.Trainer:
    """The Trainer with the configured callbacks and loggers.

    Without a held-out split there is no 'best' epoch: checkpoints keep the last epoch only,
    and the test runs on it. Validation still runs when it is on the test set (curves only).
    """
    callback_cfgs = _plain(cfg.callbacks)
    watching = {k: c for k, c in callback_cfgs.items() if c and "val/" in str(c.get("monitor"))}
    if not select_best:
        for name, callback in watching.items():
            if "save_top_k" not in callback:  # not a checkpoint: it cannot do without its metric
                raise ConfigError(
                    f"callbacks.{name} watches {callback['monitor']}, which needs "
                    "data.val_split > 0"
                )
            callback |= {"monitor": None, "save_top_k": 0}  # keep last.ckpt only
    callbacks = [instantiate(c) for c in callback_cfgs.values() if c]
    loggers = [instantiate(c) for c in _plain(cfg.logger).values() if c]
    validates = select_best or cfg.data.get("val_on_test", False)
    extra = {} if validates else {"limit_val_batches": 0}
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, **extra)


def _tested_checkpoint(trainer: L.Trainer, select_best: bool) -> str:
    """The best checkpoint by validation, or without a held-out split the last; '' if none."""
    saved = trainer.checkpoint_callback
    if not isinstance(saved, ModelCheckpoint):
        return ""
    return saved.best_model_path if select_best else saved.last_model_path


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def _score(checkpoint: Any) -> float | None:
    score = getattr(checkpoint, "best_model_score", None)
    return float(score) if score is not None else None


def _choices() -> dict[str, str]:
    """Which option of each config group this run used, e.g. {'model': 'nin', ...}."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}
