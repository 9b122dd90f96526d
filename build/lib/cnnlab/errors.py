"""The one exception type for user mistakes: the entry point prints it in one line."""


class ConfigError(Exception):
    """A bad option, a missing file or a value out of range: something the user can fix."""
