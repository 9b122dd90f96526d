"""One training run from a composed config: build, fit, test, write metrics.json."""

import inspect
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax

from cnnlab.data import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.files import write_json
from cnnlab.models import count_parameters
from cnnlab.module import Classifier
from cnnlab.sweep import group_choices, in_sweep, launcher


def run(cfg: DictConfig) -> float | None:
    """Train and test ``cfg``; return the best validation accuracy (for sweeps to rank by).
    metrics.json records the run whether it finishes or fails, for the sweep's report."""
    started_at = _now()
    try:
        Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))
        L.seed_everything(cfg.seed, workers=True)
        check(cfg)
        resume = resume_from(cfg)
        torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
        datamodule = build_datamodule(cfg)
        datamodule.setup()  # load now: a missing data set fails before anything is built
        module = build_module(cfg)
        select = datamodule.has_validation  # a held-out split to pick the best epoch on
        trainer = build_trainer(cfg, select_best=select)
        outcome = fit_and_test(trainer, module, datamodule, select, resume)
    except BaseException as error:
        stopped = isinstance(error, KeyboardInterrupt | SystemExit)
        failure = {"status": "interrupted" if stopped else "failed", "error": _describe(error)}
        _record(cfg, failure, started_at)
        _end_runs(failed=True)
        raise
    _record(cfg, {"status": "finished", **outcome}, started_at)
    _end_runs(failed=False)
    return outcome["best_val_acc"]


def fit_and_test(trainer, module, datamodule, select_best: bool, resume: str | None) -> dict:
    """Fit (from ``resume``, a checkpoint, if given) and test the chosen checkpoint."""
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    ckpt = _tested_checkpoint(trainer, select_best)
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt or None)[0]
    return {
        "best_val_acc": _score(trainer.checkpoint_callback) if select_best else None,
        "test_acc": tested["test/acc"],
        "test_loss": tested["test/loss"],
        "epochs": trainer.current_epoch,
        "wall_time_s": round(time.perf_counter() - start, 2),
        "params": count_parameters(module.net),
        "checkpoint": ckpt or None,
        "resumed_from": resume,
    }


def _record(cfg: DictConfig, outcome: dict[str, Any], started_at: str) -> None:
    """metrics.json: the outcome and what the run was. Under DDP every process has the same
    figures, and rank 0 writes them."""
    if rank_zero_only.rank != 0:
        return
    reference = cfg.get("reference")
    write_json(
        Path(cfg.paths.output_dir) / "metrics.json",
        {
            **outcome,
            "choices": group_choices(),
            "seed": cfg.seed,
            "reference": _plain(reference) if isinstance(reference, DictConfig) else None,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "started_at": started_at,
            "finished_at": _now(),
        },
    )


def check(cfg: DictConfig) -> None:
    """Mistakes that would otherwise surface only after the first epoch, or after the run."""
    reference = cfg.get("reference")
    if reference is not None and not isinstance(reference, DictConfig):
        raise ConfigError(
            f"reference must be a mapping such as {{test_acc: 0.9167, source: 'seed 002, "
            f"Table 2'}}, got {reference!r}"
        )
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
    own_processes = launcher().endswith("GpusLauncher") or "submitit" in launcher()
    if _relaunches_script(cfg) and in_sweep() and not own_processes:
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.strategy} starts its other processes by running the "
            "command line again, which inside -m would run the whole sweep again: use "
            "hydra/launcher=gpus with hydra.launcher.gpus_per_job=N (or hydra/launcher=slurm)"
        )


def _relaunches_script(cfg: DictConfig) -> bool:
    """DDP whose other ranks Lightning starts by running the script again (Lightning #11300);
    ddp_spawn and ddp_fork start them from this process instead."""
    strategy = str(cfg.trainer.get("strategy") or "")
    return strategy.startswith("ddp") and not any(s in strategy for s in ("spawn", "fork"))


def resume_from(cfg: DictConfig) -> str | None:
    """The checkpoint to go on from: ``resume=auto`` takes this run directory's last.ckpt if
    there is one, a path must exist. A SLURM job requeued after a timeout or pre-emption gets
    the same directory again, so under that launcher auto is the default."""
    resume = cfg.get("resume")
    if resume is None and "submitit" in launcher():
        resume = "auto"
    if resume is None:
        return None
    if resume == "auto":
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(resume).is_file():
        raise ConfigError(f"resume={resume}: no such checkpoint (or use resume=auto)")
    return str(resume)


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    data = _plain(cfg.data)
    accepted = inspect.signature(ImageDataModule).parameters
    unknown = sorted(set(data) - set(accepted))
    if unknown:
        raise ConfigError(
            f"data has no option {', '.join(unknown)}; it takes: "
            f"{', '.join(k for k in accepted if k not in ('augment', 'preprocess'))}"
        )
    return ImageDataModule(**data, augment=_plain(cfg.augment), preprocess=_plain(cfg.preprocess))


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
    if not select_best:  # check() lets only checkpoints watch val/ without a held-out split
        for callback in callback_cfgs.values():
            if callback and str(callback.get("monitor")).startswith("val/"):
                callback |= {"monitor": None, "save_top_k": 0}  # keep last.ckpt only
    callbacks = [instantiate(c) for c in callback_cfgs.values() if c]
    loggers = [instantiate(c) for c in _plain(cfg.logger).values() if c]
    validates = select_best or cfg.data.get("val_on_test", False)
    extra = {} if validates else {"limit_val_batches": 0}
    if SLURMEnvironment.detect():  # submitit requeues SLURM jobs; Lightning must not as well
        extra["plugins"] = [SLURMEnvironment(auto_requeue=False)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, **extra)
    for logger in trainer.loggers:  # the whole config, beside the module's hyperparameters
        logger.log_hyperparams(_plain(cfg))  # (fast_dev_run's stand-in loggers drop it)
    return trainer


def _tested_checkpoint(trainer: L.Trainer, select_best: bool) -> str:
    """The best checkpoint by validation, or without a held-out split the last; '' if none."""
    saved = trainer.checkpoint_callback
    if not isinstance(saved, ModelCheckpoint):
        return ""
    return saved.best_model_path if select_best else saved.last_model_path


def _end_runs(failed: bool) -> None:
    """Close the W&B run, marked failed if the job failed. Lightning's WandbLogger leaves it
    open, and the next job of a sweep in this process would log into it."""
    if "wandb" in sys.modules:  # imported by a WandbLogger that started a run
        sys.modules["wandb"].finish(exit_code=int(failed))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def _score(checkpoint: Any) -> float | None:
    score = getattr(checkpoint, "best_model_score", None)
    return float(score) if score is not None else None
