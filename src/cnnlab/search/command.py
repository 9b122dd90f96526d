"""A whole search from its command line: the directory and its study, the trials, the results."""

from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.search.loop import Search, say
from cnnlab.search.plan import composed, new_directory, split
from cnnlab.search.results import finish
from cnnlab.search.slots import slots
from cnnlab.search.study import SAVED, create, held, settle


def search(
    words: list[str], directory: Path | None, parallel: int | None, n_trials: int | None
) -> None:
    """Search the space in ``words`` (a file, then the overrides every trial gets) into
    ``directory`` (a new one under logs/search/ by default); with ``directory`` alone, go on
    with the search there."""
    space, overrides = split(words)
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--trials {n_trials}: expected a whole number >= 1")
    cfg = composed(space, overrides) if space is not None else None  # before anything is made
    places = slots(cfg.hydra.launcher, parallel) if cfg is not None else None
    if directory is None:
        if cfg is None:
            raise ConfigError("give a space file (spaces/example.yaml), or --dir of a search")
        directory = new_directory(cfg)
    elif cfg is None and not (directory / SAVED).is_file():
        raise ConfigError(f"{directory} holds no search ({SAVED}): give a space file too")
    with held(directory):
        space, overrides = settle(directory, space, overrides, n_trials)
        cfg = cfg or composed(space, overrides)  # a rerun's, as saved
        places = places or slots(cfg.hydra.launcher, parallel)
        study = create(directory, space)
        say(
            f"{directory}: {space.n_trials} trials, {len(places)} at a time; stopped, it goes on "
            f"with: python src/search.py --dir {directory}"
        )
        Search(directory, space, overrides, places, study).run()
        finish(study, directory, space, overrides)
