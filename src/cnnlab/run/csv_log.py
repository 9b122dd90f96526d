"""Lightning's CSV logger, keeping the rows a resumed run logged before it stopped."""

import csv

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _KeepingWriter(ExperimentWriter):
    """Adds to an existing metrics.csv, where Lightning's writer deletes it (and with it the
    epochs before a crash: the curves and the report would start at the resumed epoch)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                # its columns: a new one rewrites the file with old and new together
                self.metrics_keys = sorted(csv.DictReader(file).fieldnames or [])


class CSVLogger(LightningCSVLogger):
    """``csv/metrics.csv``, one row per epoch and stage; a resumed run goes on in the same
    file. (A run is only ever started again in its directory to resume it.)"""

    @property
    @rank_zero_experiment  # other processes get a stand-in, as from Lightning's
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment
