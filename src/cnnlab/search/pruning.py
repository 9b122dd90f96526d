"""The callback a search adds to each trial's training (``callbacks.pruning``): rank 0 reports each
validation's accuracy to the study and asks the search's pruner, and every rank stops on its answer.
Not optuna-integration's PyTorchLightningPruningCallback: its run would record a failure, and under
DDP it takes only Optuna's RDB storage, not a journal file."""

from pathlib import Path

import lightning as L

from cnnlab.errors import Pruned


class TrialPruning(L.Callback):
    # Not a setting of the run (it says which trial it is and where its study lives): a
    # finished trial trained as it would have without it, and a pruned one says so itself.
    observes_only = True

    def __init__(self, search: str, trial: int, monitor: str = "val/acc"):
        """``search``: the search's directory; ``monitor``: the metric the search ranks by."""
        self.search, self.number, self.monitor = Path(search), trial, monitor
        self._trial = None  # Optuna's, opened on rank 0 when fitting starts

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            from cnnlab.search.study import open_trial

            self._trial = open_trial(self.search, self.number)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        said = self._report(trainer) if trainer.is_global_zero else ""
        if trainer.strategy.broadcast(said):  # every rank stops, or none
            raise Pruned(said or f"trial {self.number} pruned")

    def _report(self, trainer: L.Trainer) -> str:
        """Report this epoch's score; why the pruner stops the trial, or "" to go on."""
        metric = trainer.callback_metrics.get(self.monitor)
        if metric is None or self._trial is None:
            return ""
        score, epoch = float(metric), trainer.current_epoch
        self._trial.report(score, step=epoch)  # steps from 0, as the pruners' warm-up counts
        if not self._trial.should_prune():
            return ""
        pruner = type(self._trial.study.pruner).__name__
        return f"pruned by {pruner} after {epoch + 1} epoch(s): {self.monitor} {score:.4f}"
