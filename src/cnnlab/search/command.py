"""A whole search from its command line: the directory and its study, the trials, the results."""

import shutil
from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.search.loop import Search, say
from cnnlab.search.plan import check_values, composed, new_directory, split
from cnnlab.search.results import finish
from cnnlab.search.slots import slots
from cnnlab.search.study import JOURNAL, LOCK, SAVED, create, held, settle


def search(
    words: list[str], directory: Path | None, parallel: int | None, n_trials: int | None
) -> None:
    """Search the space in ``words`` (a file, then every trial's overrides) into ``directory``
    (by default a new one under logs/search/); given ``directory`` alone, go on with its search."""
    space, overrides = split(words)
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--trials {n_trials}: expected a whole number >= 1")
    cfg = composed(space, overrides) if space is not None else None  # before anything is made
    places = slots(cfg.hydra.launcher, parallel) if cfg is not None else None
    if space is not None:
        check_values(space, overrides)
    if directory is None:
        if cfg is None:
            raise ConfigError("give a space file (spaces/example.yaml), or --dir of a search")
        directory, made = new_directory(cfg), True
    elif cfg is None and not (directory / SAVED).is_file():
        raise ConfigError(f"{directory} holds no search ({SAVED}): give a space file too")
    else:
        made = usable(directory)
    with held(directory):  # (a second search there is refused before anything is written)
        fresh = not (directory / SAVED).is_file()
        try:
            space, overrides = settle(directory, space, overrides, n_trials)
            cfg = cfg or composed(space, overrides)  # a rerun's, as saved
            places = places or slots(cfg.hydra.launcher, parallel)
            study = create(directory, space)
        except BaseException:  # refused, or stopped, before the study was made
            if fresh:
                _undo(directory, made)  # take back what was written
            raise
        say(
            f"{directory}: {space.n_trials} trials, {len(places)} at a time; stopped, it goes on "
            f"with: python src/search.py --dir {directory}"
        )
        Search(directory, space, overrides, places, study).run()
        finish(study, directory, space, overrides)


def usable(directory: Path) -> bool:
    """Whether ``--dir`` is still to be made; a file, or a folder of other files than a
    search's, is refused (a trial would take a job's record there for its own)."""
    blocked = next((p for p in (directory, *directory.parents) if p.is_file()), None)
    if blocked is not None:
        raise ConfigError(f"--dir {directory}: {blocked} is a file, not a folder")
    if not directory.exists():
        return True
    others = sorted(p.name for p in directory.iterdir() if p.name != LOCK)
    if others and not (directory / SAVED).is_file():
        raise ConfigError(
            f"--dir {directory} holds other files ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}) and no search ({SAVED}): give a new or "
            "empty folder, or a search's"
        )
    return False


def _undo(directory: Path, made: bool) -> None:
    if made:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for name in (SAVED, JOURNAL, LOCK):
        (directory / name).unlink(missing_ok=True)
