"""The files a run writes and reads: written whole or not at all, read without trusting them (a
crash, a full disk or a person may have damaged them: a damaged record is named in a warning and
treated as missing, never the end of a sweep's rerun or report), held by one process at a time."""

import csv
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cnnlab.errors import Busy, SaveFailed, first_line

log = logging.getLogger(__name__)

LOCK = ".cnnlab.lock"  # in a run directory, held while a process trains there


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed into place (atomic on POSIX) when
    the block ends without an error, removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: jobs on other machines may write the same file at the same time.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_failure(err: BaseException, path: str | Path) -> SaveFailed | None:
    """``err`` as a one-line SaveFailed naming ``path`` if a file system's OSError is behind it
    (torch says "unexpected pos 704 vs 598" for a full disk, the OSError its context); else None."""
    seen: BaseException | None = err
    for _ in range(8):  # a chain of contexts is short; never follow one round in a circle
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno:
            reason = os.strerror(seen.errno)
            return SaveFailed(f"{reason[0].lower()}{reason[1:]}: {path}")
        seen = seen.__cause__ or seen.__context__
    return None


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON record's content (a run's metrics.json); None where there is none, or where it is
    damaged (then with a warning that names it: the run counts as unfinished)."""
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
def held(
    directory: Path,
    name: str = LOCK,
    holder: str = "another process is training there",
    wait: bool = False,
) -> Iterator[None]:
    """Hold ``directory``'s lock file ``name`` while the block runs: a second process gets Busy
    naming ``holder`` (with ``wait``, it waits its turn). The lock is the operating system's
    (flock): it ends with the process, so a killed one leaves none."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / name, timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise Busy(
            f"{directory} is in use: {holder} (it holds {directory / name}); wait for it to "
            "end, or use another directory"
        ) from None
    try:
        yield
    finally:
        lock.release()


def in_use(directory: Path, name: str = LOCK) -> bool:
    """Whether another process holds ``directory``'s lock now."""
    if not (directory / name).is_file():
        return False
    lock = FileLock(directory / name, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def epoch_series(job_dir: Path) -> dict[str, dict[int, float]]:
    """Each logged metric by epoch, from the job's CSV log, where the learning rate, logged as an
    epoch starts, is on a row with a step but no epoch: it belongs to the next row that has one.
    A value that cannot be read (a log cut short) is left out."""
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
