"""Where a search's trials run side by side, one slot per trial at a time. Each trial is a process
of its own (docs/search.md says why), so under ``hydra/launcher=gpus`` the search hands out the
devices: each slot's launcher sees only its own, and no GPU holds more than ``jobs_per_gpu``."""

import os
from dataclasses import dataclass, field

from hydra.utils import instantiate
from omegaconf import DictConfig

from cnnlab.errors import ConfigError, LaunchError

GPUS = "hydra_plugins.cnnlab_gpus.gpus_launcher.GpusLauncher"


@dataclass(frozen=True)
class Slot:
    env: dict[str, str] = field(default_factory=dict)  # added to the trial's environment
    overrides: tuple[str, ...] = ()  # added to its command line


def slots(launcher: DictConfig, parallel: int | None) -> list[Slot]:
    """``parallel`` slots (by default: one, or as many as the GPUs hold under the gpus launcher)."""
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel {parallel}: expected a whole number >= 1")
    if str(launcher.get("_target_")) == GPUS:
        made = _gpu_slots(launcher, parallel)
    else:
        made = [Slot() for _ in range(parallel or 1)]
    if "OMP_NUM_THREADS" in os.environ:
        return made
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = str(max(1, (cores or 1) // len(made)))
    return [Slot({**s.env, "OMP_NUM_THREADS": threads}, s.overrides) for s in made]


def _gpu_slots(launcher: DictConfig, parallel: int | None) -> list[Slot]:
    gpus = instantiate(launcher)
    try:
        devices = gpus._devices()  # the launcher's own reading of hydra.launcher.devices
    except LaunchError as err:
        raise ConfigError(str(err)) from None
    seats = devices * gpus.jobs_per_gpu  # [a, b, a, b]: the least loaded device first
    per_job = gpus.gpus_per_job
    groups = [seats[i : i + per_job] for i in range(0, len(seats) - per_job + 1, per_job)]
    if parallel is not None and parallel > len(groups):
        raise ConfigError(
            f"--parallel {parallel}: hydra/launcher=gpus has room for {len(groups)} trial(s) at "
            f"a time ({len(devices)} GPU(s), {gpus.jobs_per_gpu} job(s) per GPU, "
            f"{per_job} GPU(s) per job)"
        )
    # The slot's launcher sees its devices only, so it takes all it sees.
    return [
        Slot({"CUDA_VISIBLE_DEVICES": ",".join(g)}, ("hydra.launcher.devices=null",))
        for g in groups[: parallel or len(groups)]
    ]
