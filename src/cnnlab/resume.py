"""Going on after a crash, a kill or a pre-emption, with nothing lost and nothing mixed up.

- ``resume=auto`` continues from the run directory's ``checkpoints/last.ckpt`` (or skips a run
  that already finished there); ``resume=PATH`` continues from that checkpoint. In a ``-m``
  sweep and under the SLURM launcher, ``resume: null`` means auto: rerunning a sweep into its
  directory skips the finished jobs and resumes the others.
- A checkpoint carries the settings that decide the result; auto refuses to go on from one
  written for other settings, rather than silently mixing two runs.
- Each epoch's randomness (data order, augmentation, dropout) is seeded from (seed, epoch,
  rank), so a run resumed from the end of an epoch continues exactly as the uninterrupted run
  would, and each DDP process draws its own.
- SIGTERM, SIGUSR1 and SIGUSR2 (SLURM's and submitit's pre-emption signals) end the current
  batch, save last.ckpt and exit; checkpoints are written to a temporary file and renamed.
"""

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from cnnlab.errors import ConfigError, Diverged
from cnnlab.module import CHECK_EVERY
from cnnlab.records import UNREADABLE, read_record, run_state, why
from cnnlab.sweep import by_submitit, in_sweep

log = logging.getLogger(__name__)

# The settings a run's result depends on: a checkpoint is only continued under the same ones.
# (where the data sits, paths, loggers and callbacks may change between attempts.)
RESULT_KEYS = (
    "seed",
    "label_smoothing",
    "data",
    "model",
    "activation",
    "init",
    "norm",
    "optimizer",
    "scheduler",
    "regularizer",
    "augment",
    "preprocess",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.gradient_clip_val",
    "trainer.accumulate_grad_batches",
)
FREE_DATA_KEYS = (
    "on_device",
    "cache_dir",
    "eval_batch_size",
    "dataset.root",
    "dataset.download",
    "dataset.verify",
)


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The resolved RESULT_KEYS of ``cfg``, flat: ``{"optimizer.lr": 0.1, ...}``."""
    flat: dict[str, Any] = {}
    for key in RESULT_KEYS:
        node = OmegaConf.select(cfg, key, default=None)
        value = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        flat.update(_flatten(key, value))
    return {k: v for k, v in flat.items() if k.removeprefix("data.") not in FREE_DATA_KEYS}


def resume_mode(cfg: DictConfig) -> str | None:
    """None (start afresh), "auto" or a checkpoint path."""
    resume = cfg.get("resume")
    # A DDP rank that Lightning started (LOCAL_RANK > 0) decides as rank 0 does, in its sweep.
    other_rank = os.environ.get("LOCAL_RANK", "0") != "0"
    if resume is None and (in_sweep() or by_submitit() or other_rank):
        return "auto"
    return None if resume is None else str(resume)


def finished_before(cfg: DictConfig) -> dict | None:
    """metrics.json of a run of these settings that already finished in this directory."""
    path = Path(cfg.paths.output_dir) / "metrics.json"
    record = read_record(path) if resume_mode(cfg) == "auto" else None
    if record is None or record.get("status") != "finished":
        return None
    _same_settings(record.get("settings"), cfg, f"{path.parent} finished")
    return record


def resume_from(cfg: DictConfig) -> str | None:
    """The checkpoint to continue from, if any. A directory that holds another run's
    checkpoints is refused unless resume says what to do with it."""
    mode = resume_mode(cfg)
    out = Path(cfg.paths.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    if mode is None:
        if (out / "metrics.json").is_file() or any(out.glob("checkpoints/*.ckpt")):
            raise ConfigError(
                f"{out} already holds a run: resume=auto goes on with it; "
                "or start in a new directory"
            )
        return None
    if mode == "auto":
        return _last_good(cfg, [last, last.with_name("best.ckpt")])
    if not Path(mode).is_file():
        raise ConfigError(f"resume={mode}: no such checkpoint (or use resume=auto)")
    try:
        run_state(mode)
    except UNREADABLE as err:
        raise ConfigError(f"resume={mode}: cannot be read ({why(err)})") from None
    return mode


def _last_good(cfg: DictConfig, checkpoints: list[Path]) -> str | None:
    """The first of ``checkpoints`` that can be read (a damaged last.ckpt is named and passed
    over: best.ckpt is an earlier state of the same run); None to start afresh."""
    for checkpoint in checkpoints:
        if not checkpoint.is_file():
            continue
        try:
            saved = run_state(checkpoint)
        except UNREADABLE as err:
            log.warning(f"{checkpoint} is damaged ({why(err)}): not resumed from")
            continue
        _same_settings(saved.get("settings"), cfg, f"{checkpoint} was written")
        if checkpoint != checkpoints[0]:
            log.warning(f"resuming from {checkpoint}, the newest checkpoint that can be read")
        return str(checkpoint)
    return None


def own_checkpoint(cfg: DictConfig, checkpoint: str | None) -> bool:
    """Whether ``checkpoint`` is this run's own (in its directory), not another run's."""
    out = Path(cfg.paths.output_dir).resolve()
    return checkpoint is not None and Path(checkpoint).resolve().is_relative_to(out)


def _same_settings(saved: dict | None, cfg: DictConfig, what: str) -> None:
    if saved is None:
        return
    now = settings(cfg)
    differ = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if differ:
        shown = ", ".join(f"{k}={saved.get(k)} (now {now.get(k)})" for k in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise ConfigError(
            f"{what} with other settings: {shown}{more}; use a new directory, or "
            "resume=PATH to go on from a checkpoint on purpose"
        )


class RunState(Callback):
    """Saved in every checkpoint: the run's settings, its training time so far and its W&B
    run id, so that a resumed run is checked, timed in full and logged to the same W&B run.
    Going on from another run's checkpoint (``carry=False``) starts the clock and the W&B run
    afresh. No checkpoint is saved with NaN or infinite weights."""

    def __init__(self, cfg: DictConfig, carry: bool = True):
        self.settings = settings(cfg)
        self.carry = carry
        self.seconds_before = 0.0
        self.wandb_id: str | None = None
        self._started = time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()
        ids = [lg.version for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        self.wandb_id = ids[0] if ids else self.wandb_id

    def seconds(self) -> float:
        """Training time over every attempt so far."""
        return self.seconds_before + time.perf_counter() - self._started

    def state_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "seconds": self.seconds(), "wandb_id": self.wandb_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.carry:
            self.seconds_before = state.get("seconds", 0.0)
            self.wandb_id = state.get("wandb_id")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # The loss is checked every step; an update can still leave non-finite weights at the
        # last step of an epoch, which must not replace the last good checkpoint.
        finite = torch.stack([p.detach().isfinite().all() for p in pl_module.parameters()])
        if not bool(finite.all()):
            raise Diverged(
                f"the weights are not finite after epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}: the checkpoint is not saved"
            )


class EpochSeed(Callback):
    """Reseed torch, numpy and Python at the start of every epoch from (seed, epoch, rank): the
    epoch's shuffle, augmentation and dropout then do not depend on what ran before it, and
    under DDP each process draws its own crops, flips, noise, dropout masks and mixups (one
    draw for all would give N GPUs the variety of one). The initial weights come from the seed
    alone, before the first epoch, and are the same in every process."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # SeedSequence mixes them, so seed 1's epoch 2 is not seed 2's epoch 1. The order of
        # the images is DistributedSampler's (seeded by the epoch, the same in every process).
        entropy = [self.seed, trainer.current_epoch, trainer.global_rank]
        mixed = np.random.SeedSequence(entropy).generate_state(1)[0]
        L.seed_everything(int(mixed), workers=True, verbose=False)


class Preempted(SystemExit):
    """Raised after the checkpoint is saved; the exit status says which signal stopped it."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}; checkpoints/last.ckpt saved"


class SaveOnSignal(Callback):
    """On SIGTERM, SIGUSR1 or SIGUSR2 during training: finish the batch, save ``path``, call the
    handler that was there before (submitit's requeues the job), and exit.

    Under DDP every process must stop at the same step (the save is collective): they agree
    on it every ``CHECK_EVERY`` steps and at an epoch's last batch, not at every step, where
    the collective would make the host wait for the device. (Lightning itself shares rank 0's
    SIGTERM at every step: every process then stops with SIGTERMException, see on_exception.)
    """

    SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # SIGTERM: Lightning's handler notes it

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self._note)

    def _note(self, signum, frame) -> None:
        self.signum = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signum = self.signum or (signal.SIGTERM if trainer.received_sigterm else None)
        if trainer.world_size > 1:
            ends_epoch = batch_idx + 1 >= trainer.num_training_batches
            if trainer.global_step % CHECK_EVERY and not ends_epoch:
                return
            # the largest signal number any process got (0: none), so all name the same one
            got = torch.tensor(signum or 0, device=pl_module.device)
            signum = int(trainer.strategy.reduce(got, reduce_op="max")) or None
        if signum is None:
            return
        trainer.save_checkpoint(self.path)
        self._quiet_sigterm()
        self._hand_on(signum)
        raise Preempted(signum)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """SIGTERM during validation, or under DDP: Lightning stops with SIGTERMException. Save
        what training reached (not in the sanity check, nor in a test after training)."""
        if isinstance(exception, SIGTERMException) and not trainer.sanity_checking:
            if trainer.state.fn == TrainerFn.FITTING:
                trainer.save_checkpoint(self.path)
            self._quiet_sigterm()
        self._hand_on(self.signum)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        signum = self.signum  # a signal that came after the last training batch
        if self._hand_on(signum):
            raise Preempted(signum)

    def _quiet_sigterm(self) -> None:
        """From here the run only stops. A requeue makes SLURM send SIGTERM to every task, and
        Lightning's handler would broadcast it to processes that have already exited (gloo:
        "connection reset by peer", and the attempt is recorded as failed; NCCL: a hang)."""
        signal.signal(signal.SIGTERM, lambda signum, frame: None)

    def _hand_on(self, signum: int | None) -> bool:
        """Put the previous handlers back, and let the one for ``signum`` (submitit's requeues
        the job, then exits) have the signal it missed; whether that handler exited."""
        previous, self.previous, self.signum = self.previous, {}, None
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if signum is None or not callable(previous.get(signum)):
            return False
        try:
            previous[signum](signum, None)
        except SystemExit:  # submitit's sys.exit(-1) once the job is requeued: the caller's
            return True  # Preempted says what happened (and an exit status that names it)
        return False


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(f"{prefix}.{key}", inner))
        return flat
    return {prefix: value}
