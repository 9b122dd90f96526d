"""The exceptions the entry points print in one line instead of a traceback."""

import sys
from typing import NoReturn

from hydra.errors import CompactHydraException


class ConfigError(Exception):
    """A bad option, a missing file or a value out of range: something the user can fix."""


class Busy(ConfigError):
    """Another process holds the directory (a run training there, a search running there)."""


class Diverged(Exception):
    """The loss became NaN or infinite: the run stops at that step, as a failure."""


class Pruned(Exception):
    """A search's pruner stopped the trial: the run records ``pruned`` and ends without an error."""


class SaveFailed(Exception):
    """A checkpoint or record could not be written (a full disk, a quota): the run stops there,
    and the previous file of that name stays as it was."""


class LaunchError(CompactHydraException):
    """A launcher's refusal (a sweep that cannot run as asked): Hydra prints it in one line."""


def first_line(error: BaseException) -> str:
    """An error's message, its first line only; its type where it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def refuse(err: Exception) -> NoReturn:
    """End a sweep that cannot run as asked the way the entry points end a user's mistake: one
    line, exit status 2. (Left to Hydra, a launcher's error gets a second line pointing at
    HYDRA_FULL_ERROR and status 1; SystemExit passes through Hydra's handler untouched.)"""
    print(f"cnnlab: error: {err}", file=sys.stderr)
    sys.exit(2)
