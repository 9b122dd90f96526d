"""Hydra's side of a job: a config composed as the scripts compose it, what a running job knows
of itself (its sweep, launcher and swept choices) and the resolvers. A key is *swept* if the
sweep's command line (``activation=elu,relu``) or its experiment's ``hydra.sweeper.params``
varies it: Hydra writes both to the sweep's ``multirun.yaml`` before the first job starts."""

import difflib
import itertools
import os
import sys
from contextlib import nullcontext
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from cnnlab import CONF
from cnnlab.errors import ConfigError


def compose(overrides: list[str], name: str = "train", hydra: bool = False) -> DictConfig:
    """``conf/<name>.yaml`` with ``overrides``, inside a running Hydra app or outside one; with
    ``hydra`` it keeps Hydra's node and becomes the job's own (its ``${hydra:...}`` resolve)."""
    outside = not GlobalHydra.instance().is_initialized()
    try:
        with (
            initialize_config_dir(str(CONF), version_base="1.3", job_name=name)
            if outside
            else nullcontext()
        ):
            cfg = hydra_compose(name, overrides=overrides, return_hydra_config=hydra)
    except Exception as err:  # Hydra's and OmegaConf's: a key or option that is not there
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ConfigError(" ".join(lines[:2]) or type(err).__name__) from None  # what, and how
    if hydra:
        HydraConfig.instance().set_config(cfg)
    return cfg


def swept_keys(sweep_dir: Path) -> list[str]:
    """The config keys a ``-m`` sweep varies, in the order it was given them."""
    cfg = OmegaConf.load(Path(sweep_dir) / "multirun.yaml").hydra
    lines = list(cfg.overrides.task)
    lines += [f"{key}={value}" for key, value in (cfg.sweeper.get("params") or {}).items()]
    keys = [o.key_or_group for o in _parse(lines) if o.is_sweep_override()]
    return list(dict.fromkeys(keys))


def job_choices(overrides: list[str], swept: list[str]) -> dict[str, str]:
    """The swept ones among a job's overrides, e.g. ``{"activation": "elu", "norm": "bn"}``."""
    chosen = {o.key_or_group: o.input_line.split("=", 1)[1] for o in _parse(overrides)}
    return {key: chosen[key] for key in swept if key in chosen}


def group_choices() -> dict[str, str]:
    """Which option of each config group this job used, e.g. ``{"model": "nin", ...}``."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def task_overrides() -> list[str]:
    """The overrides this job was given (``.hydra/overrides.yaml``); [] outside Hydra."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def sweep_group(task_name: str) -> str:
    """``<task>/<sweep directory>`` in a ``-m`` sweep (one group a sweep), else the task name."""
    if not in_sweep():
        return task_name
    return f"{task_name}/{Path(HydraConfig.get().sweep.dir).name}"


def swept_choices() -> str | None:
    """``activation=elu,norm=bn``: this job's swept choices; None outside a sweep."""
    if not in_sweep():
        return None
    hydra = HydraConfig.get()
    chosen = job_choices(list(hydra.overrides.task), swept_keys(Path(hydra.sweep.dir)))
    return ",".join(f"{k}={v}" for k, v in chosen.items()) or None


def choice_tags() -> ListConfig:
    """One tag per config group, ``model=nin``, to filter runs by in W&B (a ListConfig: a
    resolver's plain list could not stand in a resolved config)."""
    return OmegaConf.create([f"{group}={option}" for group, option in group_choices().items()])


def in_sweep() -> bool:
    """Whether this job is one of a ``-m`` sweep's."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def launcher() -> str:
    """The class that launched this job (``...BasicLauncher``, ``...SlurmLauncher``, ...)."""
    return str(HydraConfig.get().launcher._target_) if HydraConfig.initialized() else ""


def by_submitit() -> bool:
    """Launched by submitit's launchers or ours built on one (``hydra/launcher=slurm``): each
    job is a process (or, under DDP, one task per rank) of its own, requeued on pre-emption."""
    return any(name in launcher() for name in ("hydra_submitit_launcher", "cnnlab_slurm"))


def new_dir(path: str) -> str:
    """``path``, created now (mkdir is atomic, also on shared file systems); ``path-2``, ... if
    another run took it first. A folder that cannot be made ends the program with one line and
    status 2: inside Hydra's config resolution any exception is a page of traceback."""
    candidate = path
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(2):
            try:
                os.mkdir(candidate)
                return candidate
            except FileExistsError:  # another run's: the next name
                candidate = f"{path}-{n}"
    except OSError as err:
        print(f"cnnlab: error: {_cannot_create(candidate, err)}", file=sys.stderr)
        raise SystemExit(2) from None
    raise AssertionError("unreachable")


def _cannot_create(path: str, err: OSError) -> str:
    why = f"cannot create the run directory {os.path.abspath(path)}: {err.strerror}"
    if err.filename and os.path.abspath(err.filename) != os.path.abspath(path):
        why += f" ({err.filename})"  # the folder above it, say
    if isinstance(err, PermissionError):
        owner = f"user {os.getuid()}" if hasattr(os, "getuid") else "this user"
        why += f" (the folder it goes in must be writable by {owner}; see paths.log_dir)"
    return why


def check_choices(overrides: list[str], conf: Path) -> None:
    """Name an option that does not exist (``activation=relux``) and the nearest one, before
    Hydra composes anything; Hydra's own groups and what does not parse are Hydra's."""
    parser = OverridesParser.create()
    for line in overrides:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException:  # not an override (a flag's value), or one Hydra will explain
            continue
        group = override.key_or_group
        folder = conf / group
        if override.is_delete() or group.startswith("hydra") or not folder.is_dir():
            continue
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except HydraException:  # glob(...): Hydra matches it against the options
                continue
        else:
            values = [override.value()]
        options = sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))
        for value in values:
            if value is None or str(value) in options or str(value) == "null":
                continue
            near = difflib.get_close_matches(str(value), options, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise ConfigError(
                f"{group}={value}: no such option; {hint}choose from: {', '.join(options)}"
            )


def _parse(lines: list[str]):
    return OverridesParser.create().parse_overrides(lines)


# For the logger configs: ${cnnlab.sweep_group:${task_name}}, ${cnnlab.swept_choices:}, ...
for _fn in (sweep_group, swept_choices, choice_tags):
    if not OmegaConf.has_resolver(f"cnnlab.{_fn.__name__}"):
        OmegaConf.register_new_resolver(f"cnnlab.{_fn.__name__}", _fn)


# The run and sweep directories (conf/hydra/default.yaml). Cached like Hydra's ${now:}: Hydra
# reads a directory more than once, in more than one process, and it must stay the one made.
if not OmegaConf.has_resolver("cnnlab.new_dir"):
    OmegaConf.register_new_resolver("cnnlab.new_dir", new_dir, use_cache=True)
