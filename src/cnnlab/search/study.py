"""A search's directory: its Optuna study (a journal file, no database server), what it searches
(for a rerun, and for the trials' pruners), and its lock, which ends with the process: a trial left
RUNNING in the journal when the next search starts is one whose search was stopped."""

import warnings
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

from cnnlab import files
from cnnlab.errors import ConfigError, first_line
from cnnlab.files import write_text
from cnnlab.search.space import Space, read

STUDY = "search"  # the one study of a search directory
JOURNAL = "study.journal"
SAVED = "search.yaml"
LOCK = ".search.lock"


def held(directory: Path) -> AbstractContextManager[None]:
    """Hold the search directory while the block runs; a second search there is refused."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--dir {directory}: cannot be made ({err.strerror})") from None
    return files.held(directory, LOCK, holder="another search is running there")


def settle(
    directory: Path, space: Space | None, overrides: list[str], n_trials: int | None
) -> tuple[Space, list[str]]:
    """The space and overrides given or, for a rerun given none, those it started with. A rerun
    may change n_trials only: otherwise its trials would not compare with the ones before."""
    saved = _saved(directory)
    if space is None:
        space, overrides = read(saved["space"]), list(saved["overrides"])
    elif saved is not None:
        before = replace(read(saved["space"]), n_trials=space.n_trials)
        if before != space or saved["overrides"] != overrides:
            raise ConfigError(
                f"{directory} was searched with another space or other overrides; go on with "
                f"`python src/search.py --dir {directory}` alone, or search in a new directory"
            )
    if n_trials is not None:
        space = replace(space, n_trials=n_trials)
    keep = {"space": space.plain(), "overrides": overrides}
    write_text(directory / SAVED, OmegaConf.to_yaml(OmegaConf.create(keep)))
    return space, overrides


def create(directory: Path, space: Space) -> Any:
    """The directory's study, made on the first run and loaded on a rerun."""
    import optuna

    study = optuna.create_study(
        study_name=STUDY,
        storage=journal(directory),
        direction="maximize",  # the trials' best validation accuracy
        sampler=built(space.sampler, "sampler"),
        pruner=built(space.pruner, "pruner") or optuna.pruners.NopPruner(),
        load_if_exists=True,
    )
    if study.get_trials(deepcopy=False):  # a rerun: seeded as at the start, the sampler would
        study.sampler.reseed_rng()  # draw the first trials' values again (a grid keeps its order)
    return study


def open_trial(directory: Path, number: int) -> Any:
    """Trial ``number`` of the search in ``directory``, opened from a trial's training process."""
    import optuna

    space = read(_saved(directory)["space"])
    study = optuna.load_study(
        study_name=STUDY,
        storage=journal(directory),
        # This process never samples: Optuna's Trial asks the sampler to prepare all the same,
        # and the random one does nothing there (a grid sampler would mark a grid point).
        sampler=optuna.samplers.RandomSampler(),
        pruner=built(space.pruner, "pruner") or optuna.pruners.NopPruner(),
    )
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)


def journal(directory: Path) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search says what it does itself
    backend = optuna.storages.journal.JournalFileBackend(str(directory / JOURNAL))
    return optuna.storages.JournalStorage(backend)


def built(node: dict[str, Any] | None, where: str) -> Any:
    """Optuna's sampler or pruner from its ``_target_`` node; None for none."""
    if node is None:
        return None
    from optuna.exceptions import ExperimentalWarning

    try:
        with warnings.catch_warnings():  # (constant_liar, ...): chosen in the space file
            warnings.simplefilter("ignore", ExperimentalWarning)
            return instantiate(node, _convert_="all")
    except Exception as err:
        while err.__cause__ is not None:  # Hydra wraps the class's own error
            err = err.__cause__
        raise ConfigError(
            f"{where} ({node['_target_']}) cannot be built: {first_line(err)}"
        ) from None


def _saved(directory: Path) -> dict[str, Any] | None:
    path = directory / SAVED
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else None
