"""The results table of one or more sweeps: one row per configuration, repeated seeds averaged.

A job is a directory with ``.hydra/overrides.yaml``; its result is its ``metrics.json``
(``finished``, ``failed`` or ``interrupted``; none: ``unfinished``). The columns are the keys the
sweeps vary (see ``cnnlab.sweep``), without ``seed``: jobs that differ only in their seed are
one configuration, shown as mean ± std over its finished jobs.
"""

import csv
import fcntl
import io
import json
import logging
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from cnnlab.errors import ConfigError
from cnnlab.files import write_text
from cnnlab.records import read_record
from cnnlab.sweep import job_choices, swept_keys

log = logging.getLogger(__name__)

METRICS = {"best_val_acc": "best val acc", "test_acc": "test acc"}


@dataclass
class Job:
    dir: Path
    choices: dict[str, str]
    status: str
    metrics: dict[str, Any]
    reference: dict[str, Any] | None


@dataclass
class Row:
    choices: dict[str, str]
    jobs: list[Job] = field(default_factory=list)

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "finished"]

    def values(self, key: str) -> list[float]:
        return [j.metrics[key] for j in self.finished if j.metrics.get(key) is not None]

    def mean(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.fmean(values) if values else None

    def std(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else None

    def status(self) -> str:
        counts: dict[str, int] = {}
        for job in self.jobs:
            counts[job.status] = counts.get(job.status, 0) + 1
        return ", ".join(f"{n} {status}" for status, n in counts.items())


def collect(dirs: list[Path]) -> tuple[list[str], list[Job]]:
    """The swept keys (seed aside) and every job found under ``dirs``. A job's swept keys are
    those of its own sweep (the multirun.yaml beside it); a run outside a sweep is its own
    configuration, named by its path."""
    keys: list[str] = []
    jobs: list[Job] = []
    sweeps: dict[Path, list[str]] = {}
    for root in dirs:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a directory")
        for path in sorted(root.glob("**/.hydra/overrides.yaml"), key=_job_order):
            job_dir = path.parent.parent
            sweep = job_dir.parent
            if sweep not in sweeps:
                multirun = (sweep / "multirun.yaml").is_file()
                sweeps[sweep] = swept_keys(sweep) if multirun else []
            swept = sweeps[sweep]
            keys += [k for k in swept or ["run"] if k not in keys and k != "seed"]
            name = str(job_dir.relative_to(root)) if job_dir != root else root.name
            jobs.append(_job(job_dir, swept, name))
    if not jobs:
        raise ConfigError(f"no runs under {', '.join(map(str, dirs))} (no .hydra/ directory)")
    return keys, jobs


def rows(keys: list[str], jobs: list[Job], sort: str = "best_val_acc") -> list[Row]:
    """Jobs grouped by configuration, best first by ``sort`` (test_acc where no job has it)."""
    grouped: dict[tuple, Row] = {}
    for job in jobs:
        choices = {k: job.choices.get(k, "") for k in keys}
        grouped.setdefault(tuple(choices.values()), Row(choices)).jobs.append(job)
    table = list(grouped.values())
    if not any(r.mean(sort) is not None for r in table):
        sort = "test_acc"
    return sorted(table, key=lambda r: (r.mean(sort) is None, -(r.mean(sort) or 0)))


def write_report(
    dirs: list[Path], out: Path | None = None, sort: str = "best_val_acc", show: bool = True
) -> Path:
    """Write report.md, report.csv and curves.png into ``out`` (the first dir); ``show``
    prints the table too."""
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
    with open(out / ".report.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            keys, jobs = collect(dirs)
        except ConfigError:
            if created:  # nothing to report: leave nothing behind
                shutil.rmtree(out)
            raise
        table = rows(keys, jobs, sort)
        write_text(out / "report.md", _markdown(keys, table))
        write_text(out / "report.csv", _csv(keys, table))
        from cnnlab.curves import plot_curves  # matplotlib only when there is a report

        plot_curves(table, out / "curves.png")
    if show:
        Console().print(_rich(keys, table))
    return out


class SweepReport(Callback):
    """Keeps a ``-m`` sweep's report in its directory: rewritten after every job, so a sweep
    that stops half-way or has a failed job has one too, and printed when a sweep ends without
    a failure (Hydra skips its end-of-sweep callbacks otherwise)."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN and rank_zero_only.rank == 0:  # not DDP's others
            self._write(config, show=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(config, show=True)

    def _write(self, config: DictConfig, show: bool) -> None:
        try:
            write_report([Path(config.hydra.sweep.dir)], show=show)
        except Exception as error:  # the sweep's own results matter more than its report
            log.warning(f"could not write the sweep's report: {error}")


def _job(job_dir: Path, swept: list[str], name: str) -> Job:
    path = job_dir / "metrics.json"
    metrics = read_record(path) or {}  # none yet, or damaged: unfinished
    # What the run recorded comes first: a refused rerun into its directory rewrites .hydra/.
    overrides = metrics.get("overrides")
    if overrides is None:
        overrides = list(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    if "reference" in metrics:
        reference = metrics["reference"]
    else:
        reference = OmegaConf.load(job_dir / ".hydra" / "config.yaml").get("reference")
        reference = OmegaConf.to_container(reference) if reference else None
    return Job(
        dir=job_dir,
        choices=job_choices(overrides, swept) if swept else {"run": name},
        status=metrics.get("status", "finished" if "test_acc" in metrics else "unfinished"),
        metrics=metrics,
        reference=reference or None,
    )


def _job_order(path: Path) -> tuple:
    job_dir = path.parent.parent
    return (str(job_dir.parent), int(job_dir.name) if job_dir.name.isdigit() else 0, job_dir.name)


def _cells(row: Row) -> dict[str, str]:
    """A row's figures as text: accuracies in %, mean ± std (n) over its finished jobs."""
    cells = {}
    for key, title in METRICS.items():
        mean, std, n = row.mean(key), row.std(key), len(row.values(key))
        text = "" if mean is None else f"{100 * mean:.2f}"
        text += "" if std is None else f" ± {100 * std:.2f}"
        cells[title] = text + (f" (n={n})" if n > 1 else "")
    reference = next((j.reference for j in row.jobs if j.reference), None)
    cells["seed's result"] = _reference(reference)
    for key in ("epochs", "params"):
        values = [j.metrics[key] for j in row.finished if key in j.metrics]
        cells[key] = f"{round(statistics.fmean(values)):,}" if values else ""
    times = [j.metrics["wall_time_s"] for j in row.finished if "wall_time_s" in j.metrics]
    cells["wall time"] = f"{statistics.fmean(times) / 60:.1f} min" if times else ""
    cells["jobs"] = row.status()
    return cells


def _reference(reference: dict[str, Any] | None) -> str:
    if not reference:
        return ""
    figures = [f"{k} {100 * v:.2f}" for k, v in reference.items() if isinstance(v, float)]
    return f"{', '.join(figures)} ({reference.get('source', '')})"


def _rich(keys: list[str], table: list[Row]) -> Table:
    cells = [_cells(r) for r in table]
    titles = [*keys, *(cells[0] if cells else [])]
    rich = Table(*titles, title="results")
    for row, figures in zip(table, cells, strict=True):
        rich.add_row(*row.choices.values(), *figures.values())
    return rich


def _markdown(keys: list[str], table: list[Row]) -> str:
    cells = [_cells(r) for r in table]
    titles = [*keys, *cells[0]]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row, figures in zip(table, cells, strict=True):
        lines.append("| " + " | ".join([*row.choices.values(), *figures.values()]) + " |")
    return "\n".join(lines) + "\n"


def _csv(keys: list[str], table: list[Row]) -> str:
    """The raw numbers: mean, std and n of each metric, for other tools."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "n")]
    writer.writerow([*keys, *stats, "reference", "finished", "jobs"])
    for row in table:
        figures = [(row.mean(m), row.std(m), len(row.values(m))) for m in METRICS]
        reference = next((j.reference for j in row.jobs if j.reference), None)
        writer.writerow(
            [
                *row.choices.values(),
                *[x for triple in figures for x in triple],
                json.dumps(reference) if reference else "",
                len(row.finished),
                len(row.jobs),
            ]
        )
    return buffer.getvalue()
