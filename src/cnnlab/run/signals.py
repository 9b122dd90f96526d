"""SLURM's and submitit's pre-emption signals: save last.ckpt, exit with a status naming them."""

import signal
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cnnlab.training.module import CHECK_EVERY


class Preempted(SystemExit):
    """Raised after the checkpoint is saved; the exit status says which signal stopped it."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}; checkpoints/last.ckpt saved"


class SaveOnSignal(Callback):
    """On SIGTERM, SIGUSR1 or SIGUSR2 during training: finish the batch, save ``path``, call the
    handler that was there before (submitit's requeues the job), and exit. Under DDP all must
    stop at the same step (the save is collective): they agree every ``CHECK_EVERY`` steps and
    at an epoch's last batch, as at every step the collective would make the host wait for the
    device. (Lightning shares rank 0's SIGTERM at every step itself: see on_exception.)"""

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
