"""The exceptions the entry point prints in one line instead of a traceback."""

from hydra.errors import CompactHydraException


class ConfigError(Exception):
    """A bad option, a missing file or a value out of range: something the user can fix."""


class Diverged(Exception):
    """The loss became NaN or infinite: the run stops at that step, as a failure."""


class LaunchError(CompactHydraException):
    """A launcher's refusal (a sweep that cannot run as asked): Hydra prints it in one line."""
