"""report.md, report.csv and curves.png of one or more sweeps, and of a sweep as its jobs end."""

import logging
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console

from cnnlab.errors import ConfigError
from cnnlab.files import held, write_text
from cnnlab.options import read
from cnnlab.results import progress
from cnnlab.results.curves import plot_curves
from cnnlab.results.diagnosis import Thresholds
from cnnlab.results.rows import Options, collect, rows
from cnnlab.results.table import Report

log = logging.getLogger(__name__)


def write_report(
    dirs: list[Path], out: Path | None = None, options: Options | None = None, show: bool = True
) -> Path:
    """Write report.md, report.csv and curves.png into ``out`` (by default the first dir)."""
    options = options or Options()
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such directory (give sweep or run directories)")
    out = out or dirs[0]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file: the report goes in a directory")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {out}: {err.strerror}") from None
    # Jobs ending together each rewrite the report: one at a time, each reading the results
    # after the one before has written, so the last to write has seen every finished job.
    with held(out, ".report.lock", wait=True):
        try:
            table, sort = rows(collect(dirs), options)
            report = Report(table, sort, options, _progress(dirs))
            write_text(out / "report.md", report.markdown())
            write_text(out / "report.csv", report.csv())
            plot_curves(table, report.columns, out / "curves.png")
        except BaseException:
            if created:  # nothing reported: leave nothing behind
                shutil.rmtree(out)
            raise
    if show:
        Console().print(report.rich())
    return out


class SweepReport(Callback):
    """Keeps a ``-m`` sweep's report in its directory: rewritten after every job, so a sweep
    that stops half-way or has a failed job has one too, and printed when a sweep ends without
    a failure (Hydra skips its end-of-sweep callbacks otherwise)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            progress.plan(config)
        except Exception as error:  # a sweep runs without its progress line
            log.warning(f"could not count the sweep's jobs: {error}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN and _rank_zero():
            job = Path(config.hydra.runtime.output_dir)
            log.info(progress.state(Path(config.hydra.sweep.dir), starting=job).line())

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN and _rank_zero():  # not DDP's others
            self._write(config, show=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(config, show=True)

    def _write(self, config: DictConfig, show: bool) -> None:
        try:
            limits = read(Thresholds, config.get("diagnose"), "diagnose")
            write_report([Path(config.hydra.sweep.dir)], options=Options(limits=limits), show=show)
        except Exception as error:  # the sweep's own results matter more than its report
            log.warning(f"could not write the sweep's report: {error}")


def _rank_zero() -> bool:
    # Lightning imported here only: src/report.py and src/search.py read records without it.
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def _progress(dirs: list[Path]) -> progress.Progress | None:
    """How far a sweep still running is (None when it is done, or for a parent directory)."""
    if len(dirs) != 1 or not (dirs[0] / progress.PLAN).is_file():
        return None
    now = progress.state(dirs[0])
    return None if now.done else now
