"""What the data sets that read or download files share: their folder (``data.dataset.root``),
made if it can be, and one job at a time fetching into it."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from cnnlab.errors import ConfigError


def folder(root: str) -> Path:
    """``root`` as a folder, made if it is not there; one line if it cannot be."""
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"data.dataset.root={root} cannot be used as a folder: {err}") from None
    return path


@contextmanager
def one_at_a_time(path: Path, name: str) -> Iterator[None]:
    """Parallel jobs fetching the data set ``name`` into ``path`` take turns: one downloads or
    unpacks while the others wait, then finds it there."""
    with FileLock(path / f".{name}.lock"):
        yield
