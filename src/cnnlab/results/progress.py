"""A ``-m`` sweep's progress and the time left; its size is kept in its directory from the start,
so that every process that writes the report (a gpus launcher's job too) can say how far it is."""

import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig

from cnnlab.files import in_use, read_record, write_json

PLAN = ".cnnlab-sweep.json"  # in the sweep directory: {"jobs": N}
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass(frozen=True)
class Progress:
    total: int | None  # None: the sweeper's, not known in advance (not the basic sweeper)
    finished: int
    running: int
    failed: int  # or stopped without a record (killed)
    seconds_per_job: float | None  # the finished jobs' mean, start to end
    pruned: int = 0  # stopped early by a search's pruner (src/search.py): done, not failed

    @property
    def waiting(self) -> int | None:
        if self.total is None:
            return None
        return max(0, self.total - self.finished - self.running - self.failed - self.pruned)

    @property
    def done(self) -> bool:
        return self.total is not None and self.waiting == 0 and self.running == 0

    def seconds_left(self) -> float | None:
        if self.seconds_per_job is None or self.waiting is None:
            return None
        # A running job is about half done; the jobs left share the slots now in use.
        return self.seconds_per_job * (self.waiting + self.running / 2) / max(1, self.running)

    def line(self) -> str:
        total = "?" if self.total is None else str(self.total)
        waiting = "" if self.waiting is None else f", {self.waiting} waiting"
        text = (
            f"sweep: {self.finished} of {total} jobs finished, {self.running} running, "
            f"{self.failed} failed{f', {self.pruned} pruned' if self.pruned else ''}{waiting}"
        )
        left = self.seconds_left()
        if self.done or self.total is None:  # (another sweeper: the jobs left are not known)
            return text
        if left is None:
            return text + "; time left: known once a job has finished"
        return text + f"; about {_duration(left)} left"


def plan(config: DictConfig) -> None:
    """Keep in the sweep directory the number of jobs the basic sweeper makes of its overrides."""
    if str(config.hydra.sweeper.get("_target_")) != BASIC_SWEEPER:
        return  # another sweeper may choose its jobs as it goes
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    hydra = GlobalHydra.instance()  # its config loader lists a group's options, for glob()
    loader = hydra.config_loader() if hydra.is_initialized() else None
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(lines)
    total = sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))
    write_json(Path(str(config.hydra.sweep.dir)) / PLAN, {"jobs": total})  # (makes the folder)


def state(sweep_dir: Path, starting: Path | None = None) -> Progress:
    """The sweep's progress now; ``starting`` runs (it has not taken its directory's lock yet)."""
    plan_file = read_record(sweep_dir / PLAN) or {}
    finished = running = failed = pruned = 0
    times = []
    for hydra_dir in sweep_dir.glob("*/.hydra"):
        job = hydra_dir.parent
        record = read_record(job / "metrics.json") or {}
        if job == starting or in_use(job):
            running += 1
        elif record.get("status") == "finished":
            finished += 1
            times += _seconds(record)
        elif record.get("status") == "pruned":
            pruned += 1
        elif record.get("status") in ("failed", "interrupted") or not record:
            failed += 1  # a job that left no record and holds no lock was killed
    per_job = statistics.fmean(times) if times else None
    return Progress(plan_file.get("jobs"), finished, running, failed, per_job, pruned)


class Tally:
    """A launcher's own count of its jobs as it starts and ends them, for the progress line."""

    def __init__(self, total: int):
        self.total, self.failed = total, 0
        self.started: dict[int, float] = {}
        self.seconds: list[float] = []

    def start(self, num: int) -> None:
        self.started[num] = time.monotonic()

    def end(self, num: int, ok: bool) -> None:
        seconds = time.monotonic() - self.started.pop(num)
        if ok:
            self.seconds.append(seconds)
        else:
            self.failed += 1

    def line(self) -> str:
        per_job = statistics.fmean(self.seconds) if self.seconds else None
        finished, running = len(self.seconds), len(self.started)
        return Progress(self.total, finished, running, self.failed, per_job).line()


def _seconds(record: dict) -> list[float]:
    try:
        start = datetime.fromisoformat(record["started_at"])
        end = datetime.fromisoformat(record["finished_at"])
    except (KeyError, TypeError, ValueError):
        return []
    return [(end - start).total_seconds()]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
