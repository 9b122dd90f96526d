"""One job of a ``hydra/launcher=gpus`` sweep, in its own process:
``python -m hydra_plugins.cnnlab_gpus._child <job.pkl> <result.pkl>``.

The parent pickles what Hydra's ``run_job`` needs (the job's sweep config, Hydra's context and
singletons) and how to find the task function; this process runs the job exactly as Hydra's
basic launcher would in-process, and pickles the JobReturn back.
"""

import importlib.util
import inspect
import os
import pickle
import sys
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf
from omegaconf.basecontainer import BaseContainer


def main(job_path: str, result_path: str, *ignored: str) -> None:
    """``ignored``: what Lightning's DDP adds when it runs this command again for its other
    ranks (``hydra.run.dir=...``); those ranks run the same job and leave the result to rank 0."""
    with open(job_path, "rb") as f:
        sys_path, blob = pickle.load(f)
    sys.path[:] = sys_path  # so the task's modules import here as they did in the parent
    job = pickle.loads(blob)
    # The parent's OmegaConf resolvers are closures and could not be sent; keep the ones this
    # process's imports registered (OmegaConf's own, the task's), which set_state would drop.
    resolvers = dict(BaseContainer._resolvers)
    Singleton.set_state(job["singletons"])
    BaseContainer._resolvers.update(resolvers)
    setup_globals()
    ret = run_job(
        hydra_context=job["hydra_context"],
        task_function=_task(*job["task"]),
        config=job["config"],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if os.environ.get("LOCAL_RANK", "0") == "0":
        tmp = Path(f"{result_path}.tmp")
        tmp.write_bytes(pickle.dumps(_picklable(ret)))
        tmp.replace(result_path)


def _picklable(ret: JobReturn) -> JobReturn:
    """The JobReturn with plain configs and, for a failed job, a plain exception: structured
    configs refer to their dataclasses, which Hydra's plugin scan has defined a second time in
    this process (pickle refuses those), and an exception may not pickle at all."""
    ret.cfg, ret.hydra_cfg = (_plain(c) for c in (ret.cfg, ret.hydra_cfg))
    if ret.status == JobStatus.FAILED:
        error = ret._return_value
        ret._return_value = RuntimeError(f"{type(error).__name__}: {error}")
    return ret


def _plain(config: DictConfig | None) -> DictConfig | None:
    return None if config is None else OmegaConf.create(OmegaConf.to_container(config))


def _task(module: str, name: str, path: str | None):
    """The task function: imported by name, or, for a script's ``__main__``, loaded from its
    file (its ``if __name__ == "__main__"`` block does not run) and unwrapped from
    ``@hydra.main``."""
    if path is None:
        return getattr(importlib.import_module(module), name)
    spec = importlib.util.spec_from_file_location("cnnlab_gpus_task", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return inspect.unwrap(getattr(script, name))


if __name__ == "__main__":
    main(*sys.argv[1:])
