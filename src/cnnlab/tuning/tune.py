"""Before a sweep: the learning rate and the batch size to give it, found by Lightning's Tuner on
the composed training config. Both searches train the run's model for a few steps and then put
its weights back (Lightning saves and restores them): only advice is written."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import lightning as L
import torch
from annotated_types import Ge, Gt, Le
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.files import atomic, write_json, write_text
from cnnlab.options import Count, Positive, check_options, read, shown
from cnnlab.registry import build
from cnnlab.run.assemble import build_datamodule, build_module
from cnnlab.run.checks import check, several_processes
from cnnlab.training.module import Classifier
from cnnlab.tuning import lr_range

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RangeTest:
    """``lr_find``: the rate rises from ``min_lr`` to ``max_lr`` over ``steps`` training steps,
    stopping once the smoothed loss is ``stop_factor`` times its best (null: never)."""

    min_lr: Positive = 1e-6
    max_lr: Annotated[float, Gt(0), Le(100)] = 1.0
    steps: Annotated[int, Ge(10), Le(100_000)] = 100
    mode: Literal["exponential", "linear"] = "exponential"
    stop_factor: Annotated[float, Gt(1)] | None = 4.0


@dataclass(frozen=True)
class BatchFinder:
    """``batch_find``: from ``start``, the batch doubles while ``steps_per_trial`` steps fit, then
    (``binsearch``) a binary search; at most ``max_trials`` sizes, none above ``max_batch``."""

    mode: Literal["power", "binsearch"] = "binsearch"
    start: Count = 2
    max_trials: Annotated[int, Ge(1), Le(64)] = 25
    steps_per_trial: Count = 3
    max_batch: Count = 8192


def tune_options(
    find: Literal["lr", "batch_size"], lr_find: dict[str, Any], batch_find: dict[str, Any]
) -> None:
    """``find``: which search to run (``lr_find`` and ``batch_find`` are read on their own)."""


def tune(cfg: DictConfig) -> dict[str, Any]:
    """Run the search ``cfg.find`` names; write and return what it found."""
    check_tuning(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    module = build_module(cfg)
    out = Path(cfg.paths.output_dir)
    if cfg.find == "lr":
        found = find_lr(cfg, module, datamodule, out)
    else:
        found = find_batch_size(cfg, module, datamodule)
    write_json(out / "tune.json", found)
    return found


def check_tuning(cfg: DictConfig) -> None:
    """The training config's checks, then the tuning's own, before any data is loaded."""
    check(cfg)
    check_options(tune_options, {k: cfg.get(k) for k in ("find", "lr_find", "batch_find")}, "")
    test = read(RangeTest, cfg.lr_find, "lr_find")
    finder = read(BatchFinder, cfg.batch_find, "batch_find")
    if cfg.trainer.get("fast_dev_run"):  # Lightning's Tuner skips its search, returns None
        said = shown(cfg.trainer.fast_dev_run)
        raise ConfigError(
            f"trainer.fast_dev_run={said}: the tuner does not run under it; leave it false "
            "(lr_find.steps and batch_find.max_trials keep a tuning short)"
        )
    if test.min_lr >= test.max_lr:
        raise ConfigError(
            f"lr_find.min_lr={test.min_lr} must be below lr_find.max_lr={test.max_lr}"
        )
    if cfg.find == "batch_size" and finder.start > finder.max_batch:  # the Tuner would answer
        raise ConfigError(  # above max_batch
            f"batch_find.start={finder.start} is above batch_find.max_batch={finder.max_batch}: "
            "the search starts there (data.batch_size unless set); lower it or raise max_batch"
        )
    if several_processes(cfg.trainer):  # before a Trainer is built: it would look for the GPUs
        raise _distributed(cfg)


def tuning_trainer(cfg: DictConfig, steps: int) -> L.Trainer:
    """The run's Trainer without its callbacks, loggers and checkpoints, bounded by steps."""
    trainer = build(
        cfg.trainer,
        where="trainer",
        callbacks=[],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        max_epochs=-1,
        max_steps=steps,
        limit_train_batches=None,
        limit_val_batches=None,
    )
    if trainer.num_devices > 1 or trainer.num_nodes > 1 or "DDP" in type(trainer.strategy).__name__:
        raise _distributed(cfg)
    return trainer


def _distributed(cfg: DictConfig) -> ConfigError:
    return ConfigError(
        f"the tuner runs in one process on one device, not under trainer.strategy="
        f"{cfg.trainer.get('strategy', 'auto')} trainer.devices={cfg.trainer.get('devices')}: "
        "tune with trainer.devices=1, then scale the batch and the rate by the number of devices"
    )


def find_lr(
    cfg: DictConfig, module: Classifier, datamodule: ImageDataModule, out: Path
) -> dict[str, Any]:
    """The range test (lr_find.png, lr_find.csv): the rate at the steepest fall of the loss, and a
    cyclic schedule's range: up to where the loss stopped falling, from a quarter of it."""
    o = read(RangeTest, cfg.lr_find, "lr_find")
    trainer = tuning_trainer(cfg, o.steps)
    steps = _recorded_losses(module)
    module.stop_on_nonfinite = False  # the test ends when the loss explodes, on purpose
    try:
        found = Tuner(trainer).lr_find(
            module,
            datamodule=datamodule,
            min_lr=o.min_lr,
            max_lr=o.max_lr,
            num_training=o.steps,
            mode=o.mode,
            early_stop_threshold=o.stop_factor,
            update_attr=False,  # advice only: the module keeps the config's rate
        )
    finally:
        module.stop_on_nonfinite = True
        del module.training_step  # the class's own again
    rates = found.results["lr"]
    losses = _per_step(steps, len(rates), trainer.accumulate_grad_batches)
    exponential = o.mode == "exponential"
    reading = lr_range.read(rates, losses, exponential)
    if reading is None:
        raise ConfigError(
            f"the loss never fell over the {len(losses)} steps of the range test (rates "
            f"{o.min_lr:g} to {o.max_lr:g}): widen the range, or raise lr_find.steps"
        )
    with atomic(out / "lr_find.png") as tmp:
        lr_range.plot(rates, losses, reading, exponential).savefig(tmp, format="png", dpi=100)
    rows = ["lr,loss,smoothed"]  # up to the first loss that is not finite, as the curve
    curve = zip(rates, losses, reading.smoothed, strict=False)
    rows += [f"{r:.6g},{v:.6g},{s:.6g}" for r, v, s in curve]
    write_text(out / "lr_find.csv", "\n".join(rows) + "\n")
    suggestion, top = rates[reading.suggestion], rates[reading.top]
    share = lr_range.BASE_SHARE
    result = {
        "find": "lr",
        "suggestion": float(f"{suggestion:.3g}"),
        "override": f"optimizer.lr={suggestion:.3g}",
        "max_lr": float(f"{top:.3g}"),
        "base_lr": float(f"{top / share:.3g}"),
        "one_cycle": f"scheduler=onecycle optimizer.lr={top:.3g} +scheduler.div_factor={share}",
        "steps": len(losses),
        "stopped_early": len(losses) < o.steps,
        "still_falling": reading.still_falling,
        "diverged_at_lr": None if reading.diverged_at is None else rates[reading.diverged_at],
    }
    log.info(
        f"suggested rate (steepest fall of the loss): {result['override']}; cyclic or one-cycle "
        f"range {result['base_lr']}..{result['max_lr']}: {result['one_cycle']}"
    )
    if reading.still_falling:
        log.warning(
            f"the loss still fell at the last rate ({o.max_lr:g}): the range's top may lie "
            "above it; raise lr_find.max_lr to see where the loss turns"
        )
    return result


def _recorded_losses(module: Classifier) -> list[torch.Tensor]:
    """Each step's loss as the step returns it (unsmoothed), kept on the device until the end."""
    losses: list[torch.Tensor] = []
    step = module.training_step

    def recorded(batch, batch_idx):
        loss = step(batch, batch_idx)
        losses.append(loss.detach())
        return loss

    module.training_step = recorded
    return losses


def _per_step(losses: list[torch.Tensor], count: int, accumulate: int) -> list[float]:
    """One loss per optimizer step (the mean of its accumulated batches), as many as rates."""
    count = min(count, len(losses) // accumulate)
    if count == 0:
        return []
    stacked = torch.stack(losses[: count * accumulate]).float().view(count, accumulate)
    return stacked.mean(1).tolist()


def find_batch_size(
    cfg: DictConfig, module: Classifier, datamodule: ImageDataModule
) -> dict[str, Any]:
    """The largest batch that trains on the run's device, its peak GPU memory per image, and the
    rate the linear scaling rule gives it (Goyal et al., 2017)."""
    o = read(BatchFinder, cfg.batch_find, "batch_find")
    trainer = tuning_trainer(cfg, o.max_trials * o.steps_per_trial)
    size = Tuner(trainer).scale_batch_size(
        module,
        datamodule=datamodule,
        mode=o.mode,
        steps_per_trial=o.steps_per_trial,
        init_val=o.start,
        max_trials=o.max_trials,
        max_val=o.max_batch,
        margin=0.0,  # the largest that fit, as said; the headroom to leave is the user's call
    )
    datamodule.hparams.batch_size = cfg.data.batch_size  # the Tuner leaves its last try there
    size = min(int(size), len(datamodule.train_set))  # doubling can step past the set
    configured, lr = int(cfg.data.batch_size), float(cfg.optimizer.lr)
    scaled = lr * size / configured
    result = {
        "find": "batch_size",
        "batch_size": size,
        "device": str(trainer.strategy.root_device),
        "limited_by": _limit(size, datamodule, o),
        "peak_memory_per_image_mib": _memory_per_image(cfg, module, datamodule, size, o),
        "scaled_lr": float(f"{scaled:.3g}"),
        "override": f"data.batch_size={size} optimizer.lr={scaled:.3g}",
    }
    memory = result["peak_memory_per_image_mib"]
    said = f"{memory} MiB per image" if memory is not None else "memory not measured (no GPU)"
    log.info(
        f"largest batch: {size} ({result['limited_by']}; {said}); linear scaling from "
        f"data.batch_size={configured} optimizer.lr={lr:g}: {result['override']}"
    )
    return result


def _limit(size: int, datamodule: ImageDataModule, options: BatchFinder) -> str:
    if size >= len(datamodule.train_set):
        return "the training set's size"
    if size >= options.max_batch:
        return "batch_find.max_batch"
    return "the device's memory"


def _memory_per_image(
    cfg: DictConfig, module: Classifier, datamodule: ImageDataModule, size: int, o: BatchFinder
) -> float | None:
    """The peak allocated GPU memory (MiB) per image of a few steps at ``size``; None off a GPU."""
    trainer = tuning_trainer(cfg, o.steps_per_trial)
    if trainer.strategy.root_device.type != "cuda":
        return None
    weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
    datamodule.hparams.batch_size = size
    torch.cuda.reset_peak_memory_stats()
    try:
        trainer.fit(module, datamodule=datamodule)
        peak = torch.cuda.max_memory_allocated()
    finally:
        datamodule.hparams.batch_size = cfg.data.batch_size
        module.load_state_dict(weights)
    return round(peak / size / 2**20, 3)
