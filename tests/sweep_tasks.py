"""Task functions for in-process sweeps whose jobs run in child processes: a module of its own,
light to import, since each job process imports it to find its task."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback


def job_number(cfg) -> int:
    """The job's number, times ten."""
    return HydraConfig.get().job.num * 10


def exit_hard(cfg) -> int:
    """Job 1 dies without a word (as a process killed by the system would); the others return."""
    import os

    if HydraConfig.get().job.num == 1:
        os._exit(3)
    return 0


class RecordJobEnds(Callback):
    """Appends each job's number to job_ends.txt in the sweep directory when its end is called."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        with open(Path(config.hydra.sweep.dir) / "job_ends.txt", "a") as f:
            f.write(f"{config.hydra.job.num} {job_return.status.name}\n")
