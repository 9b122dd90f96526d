"""Task functions for in-process sweeps whose jobs run in child processes: a module of its own,
light to import, since each job process imports it to find its task."""

from hydra.core.hydra_config import HydraConfig


def job_number(cfg) -> int:
    """The job's number, times ten."""
    return HydraConfig.get().job.num * 10
