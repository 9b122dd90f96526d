"""What a run finds in its directory, which a crash, a full disk or a person may have damaged,
and the lock that keeps two processes from training in one directory at once.

A damaged record or checkpoint is named in a warning and treated as missing: never trusted,
and never the end of a sweep's rerun or of its report.
"""

import csv
import functools
import json
import logging
import os
import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cnnlab.errors import ConfigError
from cnnlab.targets import first_line

log = logging.getLogger(__name__)

LOCK = ".cnnlab.lock"  # in the run directory, held while a process trains there
# What torch.load raises for a file that is not a whole checkpoint (empty, cut short, text).
UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError)


class Busy(ConfigError):
    """Another process is training in the run directory (it holds the directory's lock)."""


def read_record(path: Path) -> dict[str, Any] | None:
    """A metrics.json's content; None where there is none, or where it is damaged (then with a
    warning that names it: the run counts as unfinished)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        record, why = None, first_line(err)
    else:
        why = "not a JSON object"
    if not isinstance(record, dict):
        log.warning(f"{path} is damaged ({why}): the run counts as unfinished")
        return None
    return record


@contextmanager
def held(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock while the block runs: a second sweep or run started into the
    same directory gets Busy instead of training the same job into the same files. The lock
    is the operating system's (flock): it ends with the process, so a killed run leaves none.
    Only rank 0 takes it; the other ranks of a DDP run train in its directory with it."""
    from lightning.pytorch.utilities import rank_zero_only  # (report.py reads records alone)

    if rank_zero_only.rank != 0:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise Busy(
            f"{directory} is in use: another process is training there (it holds "
            f"{directory / LOCK}); wait for it to end, or use another directory"
        ) from None
    try:
        yield
    finally:
        lock.release()


def in_use(directory: Path) -> bool:
    """Whether another process holds ``directory``'s lock now."""
    if not (directory / LOCK).is_file():
        return False
    lock = FileLock(directory / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def epoch_series(job_dir: Path) -> dict[str, dict[int, float]]:
    """Each logged metric by epoch, from the job's CSV log (train and val sit on separate rows
    of the same epoch there; the learning rate, logged as an epoch starts, on a row with a step
    but no epoch: it belongs to the next row that has one). A value that cannot be read (a log
    cut short) is left out."""
    path = job_dir / "csv" / "metrics.csv"
    series: dict[str, dict[int, float]] = {}
    if not path.is_file():
        return series
    waiting: list[dict[str, str]] = []  # rows without an epoch, until the next with one
    for record in csv.DictReader(path.open()):
        epoch = _number(record.get("epoch"))
        if epoch is None:
            waiting.append(record)
            continue
        for row in [*waiting, record]:
            for key, value in row.items():
                number = _number(value) if key not in ("epoch", "step") else None
                if number is not None:
                    series.setdefault(key, {})[int(epoch)] = number
        waiting = []
    return series


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except (TypeError, ValueError):  # a row cut short or run long
        return None


def run_state(checkpoint: str | Path) -> dict[str, Any]:
    """What RunState saved in a checkpoint ({} for one written without it). A file that is not
    a checkpoint raises one of UNREADABLE."""
    # Start-up asks twice (settings, then the W&B id): read a large checkpoint once.
    return _run_state(str(checkpoint), os.stat(checkpoint).st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _run_state(checkpoint: str, modified_ns: int) -> dict[str, Any]:
    saved = _load(checkpoint)
    return saved.get("callbacks", {}).get("RunState", {})


def check_fits(weights: dict[str, Any], checkpoint: str) -> None:
    """Refuse to go on from ``checkpoint`` if its network is not the one built (``weights``, the
    module's state_dict): named now, in one line, rather than as Lightning's page of size
    mismatches after the whole build."""
    saved = _load(checkpoint).get("state_dict", {})
    differ = [
        f"{name} is {_shape(weights[name])} here and {_shape(saved[name])} in it"
        for name in weights
        if name in saved and tuple(weights[name].shape) != tuple(saved[name].shape)
    ]
    differ += [f"it has no {name}" for name in weights if name not in saved]
    differ += [f"it has {name}, which this network lacks" for name in saved if name not in weights]
    if differ:
        more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        raise ConfigError(
            f"resume={checkpoint}: a checkpoint of another network: {differ[0]}{more}; "
            "resume from a checkpoint of this model, data set and options"
        )


def _load(checkpoint: str) -> dict[str, Any]:
    import torch  # here: reading a metrics.json (report.py) needs no torch

    # torch's own words for these are about mmap or miniz, and mislead
    if os.path.getsize(checkpoint) == 0:
        raise ValueError("the file is empty")
    if not zipfile.is_zipfile(checkpoint):
        raise ValueError("cut short, or not a checkpoint: torch writes checkpoints as zip files")
    # mmap: the tensors are not read until used, so checking a large checkpoint costs little
    saved = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=False)
    if not isinstance(saved, dict):
        raise ValueError(f"it holds a {type(saved).__name__}, not a checkpoint's dict")
    return saved


def why(err: BaseException) -> str:
    """Why a file cannot be read, in a few words (torch's messages run to a paragraph)."""
    return first_line(err)[:200]


def _shape(tensor: Any) -> str:
    return "x".join(str(n) for n in tensor.shape) or "a scalar"
