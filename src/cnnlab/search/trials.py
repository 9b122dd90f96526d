"""One trial: its training job started through the chosen launcher, and its outcome read back.
Each trial is a sweep directory of its own, so that no two trials write the same multirun.yaml."""

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import CONF, processes
from cnnlab.files import read_record
from cnnlab.search.slots import Slot
from cnnlab.search.space import hydra_value, override

TRAIN = CONF.parent / "src" / "train.py"


@dataclass
class Running:
    number: int
    slot: int
    process: subprocess.Popen


@dataclass(frozen=True)
class Outcome:
    state: str  # finished, pruned, failed, interrupted, or unrecorded (it wrote nothing)
    value: float | None  # the best validation accuracy of a finished trial
    said: str  # what went wrong, or where the pruner stopped it

    @property
    def refused(self) -> bool:
        """Refused at start (a ConfigError): a mistake in the space or the overrides."""
        return self.state == "failed" and self.said.startswith("ConfigError")


def trial_dir(directory: Path, number: int) -> Path:
    return directory / str(number)


def command(directory: Path, number: int, fixed: list[str], params: dict[str, Any]) -> list[str]:
    """The trial's command line: one job of ``-m`` into its own directory."""
    pruning = {
        "_target_": "cnnlab.search.pruning.TrialPruning",
        "search": str(directory.resolve()),
        "trial": number,
    }
    return [
        sys.executable,
        str(TRAIN),
        "-m",
        override("hydra.sweep.dir", str(trial_dir(directory, number).resolve())),
        "hydra.sweep.subdir=''",  # the job's directory is the trial's
        "~hydra.callbacks.report",  # the search writes the report over all its trials
        *fixed,
        *(override(k, v) for k, v in params.items()),
        *(f"++callbacks.pruning.{k}={hydra_value(v)}" for k, v in pruning.items()),
    ]


def start(directory: Path, number: int, argv: list[str], slot: Slot) -> subprocess.Popen:
    """Start the trial's process; its output goes to ``trial.log``, after any earlier attempt's."""
    out = trial_dir(directory, number)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "trial.log", "ab") as log:
        devices = slot.env.get("CUDA_VISIBLE_DEVICES")
        on = f", GPU {devices}" if devices else ""
        log.write(f"==== trial {number}{on}, started {time.ctime()} ====\n".encode())
        log.write((" ".join(argv) + "\n").encode())
        log.flush()
        return processes.start(argv, log, {**os.environ, **slot.env})


def outcome(directory: Path, number: int, exit_code: int | None) -> Outcome:
    """What trial ``number``'s job recorded."""
    record = read_record(trial_dir(directory, number) / "metrics.json") or {}
    state = record.get("status")
    log = trial_dir(directory, number) / "trial.log"
    if state == "finished":
        value = record.get("best_val_acc")
        if isinstance(value, int | float) and math.isfinite(value):
            return Outcome("finished", float(value), "")
        return Outcome("failed", None, "no validation accuracy (best_val_acc) was recorded")
    if state == "pruned":
        return Outcome("pruned", None, str(record.get("pruned", "")))
    if state in ("failed", "interrupted"):
        return Outcome(state, None, str(record.get("error", "")))
    ended = "" if exit_code is None else f" (exit code {exit_code})"
    return Outcome("unrecorded", None, f"the job left no record{ended}: see {log}")
