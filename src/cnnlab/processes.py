"""Child processes (a search's trials, the gpus launcher's jobs) that never outlive their parent."""

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

STOPS = (signal.SIGINT, signal.SIGTERM)
# Looked up here, in the parent: between fork and exec the child may only call it. Loading a
# library there (dlopen) takes a lock that another thread of the parent may hold.
_PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl if sys.platform == "linux" else None


def start(argv: list[str], output: IO, env: dict[str, str]) -> subprocess.Popen:
    """``argv`` in a process group of its own (stopped as a whole), writing to ``output``."""
    return subprocess.Popen(
        argv,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    """In the child before it starts: Linux sends it SIGTERM if the parent dies, even by
    SIGKILL, so no child trains on unseen."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextmanager
def noted() -> Iterator[list[int]]:
    """While the block runs, Ctrl-C and SIGTERM are only noted in the list it gives, for the
    caller's loop to act on. Raised from a handler, a KeyboardInterrupt can land in a finalizer
    (where Python prints and drops it) or between starting a child and recording it."""
    seen: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: seen.append(signum)) for sig in STOPS}
    try:
        yield seen
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop(processes: list[subprocess.Popen], seconds: float) -> None:
    """SIGTERM each process group (a run saves last.ckpt and records ``interrupted``), then
    SIGKILL what is left after ``seconds``. A second Ctrl-C must not cut this short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOPS}
    try:
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + seconds
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_for(signum: int) -> None:
    """Unwind the caller, which stops its children, as the signal itself would have."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
