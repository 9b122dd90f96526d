"""The exceptions the entry point prints in one line instead of a traceback."""


class ConfigError(Exception):
    """A bad option, a missing file or a value out of range: something the user can fix."""


class Diverged(Exception):
    """The loss became NaN or infinite: the run stops at that step, as a failure."""
