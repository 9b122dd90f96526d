"""The report's rows: every job (a directory with ``.hydra/overrides.yaml``) found under the
directories reported on, grouped by recipe: jobs whose settings (``cnnlab.config.settings``) are
the same but the seed and the cross-validation fold are one row, whichever sweep they come from."""

import json
import logging
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnlab.config.settings import SCOPE, settings, upgrade
from cnnlab.errors import ConfigError, first_line
from cnnlab.files import epoch_series, read_record
from cnnlab.results.diagnosis import Finding, Thresholds, diagnose, mixed
from cnnlab.results.significance import ALPHA

log = logging.getLogger(__name__)

METRICS = {"best_val_acc": "best val acc", "test_acc": "test acc"}
REPEATS = ("seed", "data.fold")  # what tells apart the runs a row pools


@dataclass
class Job:
    dir: Path
    name: str  # its path under the directory reported on
    status: str
    metrics: dict[str, Any]
    settings: dict[str, Any]  # what decides its result, the seed aside
    choices: dict[str, str]  # the option of each config group
    reference: dict[str, Any] | None

    @cached_property
    def series(self) -> dict[str, dict[int, float]]:
        """Its CSV log by epoch, read once (for the rules, then for curves.png)."""
        return epoch_series(self.dir)


@dataclass
class Row:
    """The jobs of one recipe."""

    settings: dict[str, Any]
    choices: dict[str, str]
    jobs: list[Job] = field(default_factory=list)
    findings: list[tuple[Job, Finding]] = field(default_factory=list)  # what the curves say

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "finished"]

    def values(self, key: str) -> list[float]:
        """The finished jobs' ``key``, where it is a number (not NaN: a NaN accuracy is none)."""
        found = [j.metrics.get(key) for j in self.finished]
        return [v for v in found if isinstance(v, int | float) and math.isfinite(v)]

    def mean(self, key: str) -> float | None:
        values = self.values(key)
        return sum(values) / len(values) if values else None

    @property
    def reference(self) -> dict[str, Any] | None:
        return next((j.reference for j in self.jobs if j.reference), None)


@dataclass(frozen=True)
class Options:
    sort: str = "best_val_acc"  # the metric rows are ranked and compared by
    alpha: float = ALPHA  # the tests' level; the intervals are 1 - alpha
    min_seeds: int | None = None  # show the seeds each comparison needs, up to this many
    limits: Thresholds = Thresholds()  # when the curves' rules fire


def collect(dirs: list[Path]) -> list[Job]:
    """Every job found under ``dirs``."""
    jobs: list[Job] = []
    for root in dirs:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a directory")
        for path in sorted(root.glob("**/.hydra/overrides.yaml"), key=_job_order):
            job_dir = path.parent.parent
            name = str(job_dir.relative_to(root)) if job_dir != root else root.name
            jobs.append(_job(job_dir, name))
    if not jobs:
        raise ConfigError(f"no runs under {', '.join(map(str, dirs))} (no .hydra/ directory)")
    return jobs


def rows(jobs: list[Job], options: Options = Options()) -> tuple[list[Row], str]:
    """Rows best first by ``options.sort`` (test_acc where no job has it), and the metric used."""
    grouped: dict[str, Row] = {}
    for job in jobs:
        key = json.dumps(job.settings, sort_keys=True, default=str)
        row = grouped.setdefault(key, Row(job.settings, job.choices))
        row.jobs.append(job)
        row.findings += [(job, f) for f in _read_curves(job, options.limits)]
    table = list(grouped.values())
    sort = options.sort
    if not any(r.mean(sort) is not None for r in table):
        sort = "test_acc"
    table.sort(key=lambda r: (r.mean(sort) is None, -(r.mean(sort) or 0)))
    return table, sort


def _job(job_dir: Path, name: str) -> Job:
    metrics = read_record(job_dir / "metrics.json") or {}  # none yet, or damaged: unfinished
    if "reference" in metrics:
        reference = metrics["reference"]
    else:
        reference = _saved_config(job_dir).get("reference")
        reference = OmegaConf.to_container(reference) if reference else None
    # What the run recorded comes first: a refused rerun into its directory rewrites .hydra/.
    # An older cnnlab recorded a few settings only: the saved config has them all.
    recorded = metrics.get("settings") if metrics.get("settings_scope") == SCOPE else None
    recipe = upgrade(recorded if recorded is not None else _saved_settings(job_dir))
    for repeat in REPEATS:  # the runs of one recipe: seeds, and the folds of cross-validation
        recipe.pop(repeat, None)
    status = metrics.get("status", "finished" if "test_acc" in metrics else "unfinished")
    choices = metrics.get("choices")
    if choices is None:
        choices = _saved_choices(job_dir)
    return Job(job_dir, name, status, metrics, recipe, choices, reference or None)


def _saved_config(job_dir: Path, name: str = "config.yaml") -> DictConfig:
    """A file Hydra saved in the job's ``.hydra/``; empty if missing or damaged (named)."""
    path = job_dir / ".hydra" / name
    try:
        return OmegaConf.load(path) if path.is_file() else OmegaConf.create()
    except Exception as error:
        log.warning(f"{path} cannot be read ({first_line(error)}): left out")
        return OmegaConf.create()


def _saved_settings(job_dir: Path) -> dict[str, Any]:
    """The settings of a job that has not recorded them yet, from the config Hydra saved."""
    try:
        found = settings(_saved_config(job_dir))
    except Exception as error:  # a resolver of its own, a damaged file: a row of its own
        log.warning(f"{job_dir}: its settings cannot be read ({error})")
        found = {}
    return found or {"run": str(job_dir)}


def _saved_choices(job_dir: Path) -> dict[str, str]:
    choices = OmegaConf.select(_saved_config(job_dir, "hydra.yaml"), "hydra.runtime.choices")
    if not isinstance(choices, DictConfig):
        return {}
    return {k: str(v) for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def _read_curves(job: Job, limits: Thresholds) -> list[Finding]:
    """What a job's curves say; a run that failed as its loss stopped being finite too."""
    findings = diagnose(job.series, limits, mixed(job.settings))
    error = str(job.metrics.get("error", ""))
    if error.startswith("Diverged") and not any(f.rule == "diverged" for f in findings):
        findings.insert(0, Finding("diverged", error.removeprefix("Diverged: ")))
    return findings


def _job_order(path: Path) -> tuple:
    job_dir = path.parent.parent
    return (str(job_dir.parent), int(job_dir.name) if job_dir.name.isdigit() else 0, job_dir.name)
