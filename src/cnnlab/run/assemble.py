"""A run's objects assembled from its config: the data module, the Classifier and the Trainer."""

import inspect
from pathlib import Path

from lightning.pytorch.plugins import AsyncCheckpointIO
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.models.pretrained import load_pretrained
from cnnlab.options import plain
from cnnlab.registry import build
from cnnlab.run.checkpoints import AtomicCheckpointIO, StopOnFailedSave
from cnnlab.run.resume import own_checkpoint, run_state
from cnnlab.run.seeds import EpochSeed
from cnnlab.run.signals import SaveOnSignal
from cnnlab.run.state import RunState
from cnnlab.training.module import Classifier


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    data = plain(cfg.data)
    accepted = inspect.signature(ImageDataModule).parameters
    unknown = sorted(set(data) - set(accepted))
    if unknown:
        raise ConfigError(
            f"data has no option {', '.join(unknown)}; it takes: "
            f"{', '.join(k for k in accepted if k not in ('augment', 'preprocess'))}"
        )
    return ImageDataModule(**data, augment=plain(cfg.augment), preprocess=plain(cfg.preprocess))


def build_module(cfg: DictConfig, pretrained: bool = True) -> Classifier:
    """The Classifier of ``cfg``, with ``init.checkpoint``'s weights if ``pretrained`` (not when
    resuming: the file may be gone); loaded here so that its checkpoints load without the file."""
    takes = inspect.signature(Classifier).parameters
    module = Classifier(**{name: plain(cfg[name]) for name in takes if name in cfg})
    if pretrained:
        load_pretrained(module.net, cfg.init.checkpoint)
    return module


def build_trainer(cfg: DictConfig, select_best: bool = True, resume: str | None = None):
    """The Trainer with the configured callbacks and loggers, and what resuming needs. Without a
    held-out split (not ``select_best``) checkpoints keep the last epoch, the one tested, and
    validation runs only when it is on the test set (curves only)."""
    callback_cfgs = plain(cfg.callbacks) or {}
    if not select_best:  # check() lets only checkpoints watch val/ without a held-out split
        for name, callback in list(callback_cfgs.items()):
            if callback and str(callback.get("monitor")).startswith("val/"):
                del callback_cfgs[name]  # nothing to choose by: last.ckpt is the one kept
    callbacks = [build(c, where=f"callbacks.{k}") for k, c in callback_cfgs.items() if c]
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    own = own_checkpoint(cfg, resume)  # another run's checkpoint: a new clock and W&B run
    writer = AtomicCheckpointIO()
    callbacks += [RunState(cfg, carry=own), EpochSeed(cfg.seed), SaveOnSignal(last)]
    callbacks.append(StopOnFailedSave(writer))
    logger_cfgs = plain(cfg.logger) or {}
    wandb_id = run_state(resume).get("wandb_id") if own else None
    if wandb_id and logger_cfgs.get("wandb"):
        logger_cfgs["wandb"] |= {"id": wandb_id, "resume": "allow"}
    loggers = [build(c, where=f"logger.{k}") for k, c in logger_cfgs.items() if c]
    validates = select_best or bool(cfg.data.get("val_on_test"))
    extra = {} if validates else {"limit_val_batches": 0}
    # Checkpoints are written in a thread (from copies of the tensors), so training does not
    # wait for the disk; Lightning waits for the last one when fitting ends or fails.
    plugins = [AsyncCheckpointIO(writer)]
    if SLURMEnvironment.detect():  # submitit requeues SLURM jobs; Lightning must not as well
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = build(
        cfg.trainer, where="trainer", callbacks=callbacks, logger=loggers, plugins=plugins, **extra
    )
    for logger in trainer.loggers:  # the whole config, beside the module's hyperparameters
        logger.log_hyperparams(plain(cfg))  # (fast_dev_run's stand-in loggers drop it)
    return trainer
