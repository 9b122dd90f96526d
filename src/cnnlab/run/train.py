"""One training run from a composed config: build, fit, test, write metrics.json."""

import logging
import os
import signal
import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax

from cnnlab.config.job import by_submitit, group_choices, in_sweep, task_overrides
from cnnlab.config.settings import SCOPE, settings
from cnnlab.errors import Busy, Pruned, SaveFailed
from cnnlab.files import LOCK, epoch_series, held, save_failure, write_json
from cnnlab.models.build import count_parameters
from cnnlab.options import plain, read
from cnnlab.results.diagnosis import Thresholds, as_records, diagnose
from cnnlab.run.assemble import build_datamodule, build_module, build_trainer
from cnnlab.run.checks import check
from cnnlab.run.resume import check_fits, finished_before, resume_from
from cnnlab.run.signals import Preempted
from cnnlab.run.state import RunState

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float | None:
    """Train and test ``cfg``; return the best validation accuracy (for sweeps to rank by).
    metrics.json records the run whether it finishes or fails, for the sweep's report."""
    started_at = _now()
    owner = False  # whether this run got to train here, and so may replace metrics.json
    out = Path(cfg.paths.output_dir)
    try:
        check(cfg)
        with held(out) if rank_zero_only.rank == 0 else nullcontext():  # DDP's others: in
            # rank 0's directory, under its lock
            done = finished_before(cfg)
            if done is not None:  # a sweep rerun into its directory: this job is done
                log.info(f"{out} finished before (resume=auto): skipped")
                return done.get("best_val_acc")
            resume = resume_from(cfg)
            owner = True
            outcome = train(cfg, resume)
            _record(cfg, {"status": "finished", **outcome}, started_at)
    except Busy:  # another process trains here: its record is its own
        if not (in_sweep() or by_submitit()):
            raise
        log.warning(f"{out}: another process is training this job (it holds {LOCK}): skipped")
        return None
    except BaseException as error:
        if isinstance(error, SIGTERMException):  # Lightning's, outside a training batch
            error = Preempted(signal.SIGTERM)
        stopped = isinstance(error, KeyboardInterrupt | SystemExit)
        failure = {"status": "interrupted" if stopped else "failed", "error": _describe(error)}
        if isinstance(error, Pruned):  # a search's pruner stopped it: an outcome, not a fault
            failure = {"status": "pruned", "pruned": str(error)}
        if owner or not (out / "metrics.json").exists():
            try:  # a refused start never overwrites a run's record
                _record(cfg, failure, started_at)
            except SaveFailed as unsaved:  # the disk is full: the error is what matters
                log.warning(f"the run's record is not written ({unsaved})")
        _end_runs(failed=not isinstance(error, Pruned))
        if isinstance(error, Pruned):  # the job ends cleanly; the search reads its record
            return None
        if isinstance(error, Preempted):
            raise error from None  # its exit status names the signal
        raise
    _end_runs(failed=False)
    return outcome["best_val_acc"]


def train(cfg: DictConfig, resume: str | None) -> dict[str, Any]:
    """Build everything, fit (from ``resume``, a checkpoint, if given) and test: the outcome."""
    Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    datamodule = build_datamodule(cfg)
    datamodule.setup()  # load now: a missing data set fails before anything is built
    module = build_module(cfg, pretrained=resume is None)
    if resume is not None:  # another architecture's checkpoint: one line, not a page
        check_fits(module.state_dict(), resume)
    select = datamodule.has_validation  # a held-out split to pick the best epoch on
    trainer = build_trainer(cfg, select_best=select, resume=resume)
    outcome = fit_and_test(trainer, module, datamodule, select, resume)
    return {**outcome, "diagnosis": read_curves(cfg, trainer, mixed=datamodule.mixup is not None)}


def read_curves(cfg: DictConfig, trainer: L.Trainer, mixed: bool) -> list[dict[str, str]] | None:
    """What the run's curves say, logged and returned; None if unreadable (the run stands)."""
    try:
        for logger in trainer.loggers:
            logger.save()  # the CSV logger writes its rows in batches
        series = epoch_series(Path(cfg.paths.output_dir))
        findings = diagnose(series, read(Thresholds, cfg.diagnose, "diagnose"), mixed)
    except Exception as error:
        log.warning(f"the run's curves could not be read: {error}")
        return None
    for finding in findings:
        log.warning(f"the curves say: {finding}")
    return as_records(findings)


def fit_and_test(trainer, module, datamodule, select_best: bool, resume: str | None) -> dict:
    """Fit (from ``resume``, a checkpoint, if given) and test the chosen checkpoint."""
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    clock = next(c for c in trainer.callbacks if isinstance(c, RunState))
    trained_for = clock.seconds()
    ckpt, why_not = _tested_checkpoint(trainer, select_best)
    if ckpt is None:
        log.warning(f"the final weights are tested: {why_not}")
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)[0]
    return {
        "best_val_acc": _best_score(trainer) if select_best else None,
        "test_acc": tested["test/acc"],
        "test_loss": tested["test/loss"],
        "epochs": trainer.current_epoch,
        "wall_time_s": round(trained_for, 2),  # fitting, over every attempt
        "params": count_parameters(module.net),
        "checkpoint": ckpt,  # the one tested; None: the final weights, for the reason below
        **({"checkpoint_missing": why_not} if ckpt is None else {}),
        "resumed_from": resume,
    }


def _record(cfg: DictConfig, outcome: dict[str, Any], started_at: str) -> None:
    """metrics.json: the outcome and what the run was. Under DDP every process has the same
    figures, and rank 0 writes them."""
    if rank_zero_only.rank != 0:
        return
    reference = cfg.get("reference")
    record = {
        **outcome,
        "choices": group_choices(),
        "seed": cfg.seed,
        "settings": _settings(cfg),  # what a rerun with resume=auto compares against
        "settings_scope": SCOPE,
        "overrides": task_overrides(),  # the report's, should .hydra/ be rewritten
        "reference": plain(reference) if isinstance(reference, DictConfig) else None,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "started_at": started_at,
        "finished_at": _now(),
    }
    path = Path(cfg.paths.output_dir) / "metrics.json"
    try:
        write_json(path, record)
    except OSError as err:
        raise (save_failure(err, path) or err) from None


def _settings(cfg: DictConfig) -> dict[str, Any] | None:
    try:
        return settings(cfg)
    except Exception as error:  # a failed run's record keeps its own error, not this one
        log.warning(f"the run's settings could not be read: {error}")
        return None


def _tested_checkpoint(trainer: L.Trainer, select_best: bool) -> tuple[str | None, str]:
    """The best checkpoint by validation, or without a held-out split the last (the one
    that watches nothing keeps it); else None and why there is none."""
    for saved in trainer.checkpoint_callbacks:
        if isinstance(saved, ModelCheckpoint) and (saved.monitor is not None) == select_best:
            if saved.best_model_path:
                return saved.best_model_path, ""
            if select_best:
                why = f"no best checkpoint: validation never ran ({saved.monitor} never measured)"
                return None, why
            return None, "no checkpoint of the last epoch was saved"
    kind = "best (by validation)" if select_best else "last"
    return None, f"no checkpoint callback keeps the {kind} epoch's weights"


def _best_score(trainer: L.Trainer) -> float | None:
    watching = [c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)]
    score = getattr(watching[0], "best_model_score", None) if watching else None
    return float(score) if score is not None else None


def _end_runs(failed: bool) -> None:
    """Close the W&B run, marked failed if the job failed. Lightning's WandbLogger leaves it
    open, and the next job of a sweep in this process would log into it."""
    if "wandb" in sys.modules:  # imported by a WandbLogger that started a run
        sys.modules["wandb"].finish(exit_code=int(failed))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


def _now() -> str:
    return datetime.now(UTC).isoformat()
