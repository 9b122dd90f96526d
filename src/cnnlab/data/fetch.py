"""What the data sets that read or download files share: their folder (``data.dataset.root``),
made if it can be. One job at a time fetches into it: ``cnnlab.files.held`` with ``wait``."""

from pathlib import Path

from cnnlab.errors import ConfigError


def folder(root: str) -> Path:
    """``root`` as a folder, made if it is not there; one line if it cannot be."""
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"data.dataset.root={root} cannot be used as a folder: {err}") from None
    return path
