"""A job's place in its sweep: the sweep's name, and the choices that tell its jobs apart.

Hydra writes the sweep's own command line (``activation=elu,relu``) and its experiment's
``hydra.sweeper.params`` to ``multirun.yaml`` in the sweep directory before the first job
starts; a key is *swept* if either varies it. W&B names runs by their swept choices, and the
results table makes them its columns.
"""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import ListConfig, OmegaConf

from cnnlab.files import new_dir


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
    """``<task>/<sweep directory>`` for a job of a ``-m`` sweep, so each sweep is one group;
    the task name for a single run."""
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


# For the logger configs: ${cnnlab.sweep_group:${task_name}}, ${cnnlab.swept_choices:}, ...
for _fn in (sweep_group, swept_choices, choice_tags):
    if not OmegaConf.has_resolver(f"cnnlab.{_fn.__name__}"):
        OmegaConf.register_new_resolver(f"cnnlab.{_fn.__name__}", _fn)


# The run and sweep directories (conf/hydra/default.yaml). Cached like Hydra's ${now:}: Hydra
# reads a directory more than once, in more than one process, and it must stay the one made.
if not OmegaConf.has_resolver("cnnlab.new_dir"):
    OmegaConf.register_new_resolver("cnnlab.new_dir", new_dir, use_cache=True)


def _parse(lines: list[str]):
    return OverridesParser.create().parse_overrides(lines)
