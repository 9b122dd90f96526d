"""Files written so that a crash never leaves half of one behind."""

import itertools
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnlab.errors import SaveFailed
from cnnlab.records import LOCK, in_use, read_record


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
    """``err`` as a one-line SaveFailed naming ``path``, if an OSError of the file system is
    behind it; None otherwise. torch reports a write that failed (a full disk) as
    "unexpected pos 704 vs 598", with the OSError only as that error's context."""
    seen: BaseException | None = err
    for _ in range(8):  # a chain of contexts is short; never follow one round in a circle
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno:
            reason = os.strerror(seen.errno)
            return SaveFailed(f"{reason[0].lower()}{reason[1:]}: {path}")
        seen = seen.__cause__ or seen.__context__
    return None


def remove_refused(directory: Path) -> None:
    """Remove the directory of a run that was refused at start: only if it holds nothing but
    what Hydra and the refusal wrote there (.hydra/, the job's log, a metrics.json of the
    error), never a directory with another run's files in it."""
    if not directory.is_dir() or in_use(directory):  # (a second run started into a live one)
        return
    names = [p.name for p in directory.iterdir()]
    if not all(n in (".hydra", "metrics.json", LOCK) or n.endswith(".log") for n in names):
        return
    record = directory / "metrics.json"
    if record.is_file():
        error = (read_record(record) or {}).get("error") or ""
        if not error.startswith("ConfigError"):
            return
    shutil.rmtree(directory)


def new_dir(path: str) -> str:
    """``path``, created now; ``path-2``, ``path-3``... if another run took it first (two runs
    started in the same second). mkdir is atomic, also on shared file systems.

    A folder that cannot be made (a logs/ mount the user may not write, a file in the way) ends
    the program with one line and status 2: this runs inside Hydra's config resolution, whose
    reports of any exception are a page of traceback."""
    candidate = path
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(2):
            try:
                os.mkdir(candidate)
                return candidate
            except FileExistsError:  # another run's: the next name
                candidate = f"{path}-{n}"
    except OSError as err:
        print(f"cnnlab: error: {_cannot_create(candidate, err)}", file=sys.stderr)
        raise SystemExit(2) from None
    raise AssertionError("unreachable")


def _cannot_create(path: str, err: OSError) -> str:
    why = f"cannot create the run directory {os.path.abspath(path)}: {err.strerror}"
    if err.filename and os.path.abspath(err.filename) != os.path.abspath(path):
        why += f" ({err.filename})"  # the folder above it, say
    if isinstance(err, PermissionError):
        owner = f"user {os.getuid()}" if hasattr(os, "getuid") else "this user"
        why += f" (the folder it goes in must be writable by {owner}; see paths.log_dir)"
    return why


def check_dir_overrides(args: list[str]) -> None:
    """``hydra.run.dir=`` or ``hydra.sweep.dir=`` naming a file, or a folder under one: end the
    program with one line and status 2 before Hydra tries to make it (its mkdir fails with a
    page of traceback, and status 0 for a single run)."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") not in ("hydra.run.dir", "hydra.sweep.dir") or "${" in value:
            continue
        path = Path(value.strip("'\""))
        blocked = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            print(f"cnnlab: error: {arg}: {blocked} is a file, not a folder", file=sys.stderr)
            raise SystemExit(2)
