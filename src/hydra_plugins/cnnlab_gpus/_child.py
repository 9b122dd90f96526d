"""One job of a ``hydra/launcher=gpus`` sweep, in its own process: it runs the job through
Hydra's ``run_job``, as the basic launcher would in-process, and sends back the JobReturn."""

import os
import pickle
import sys
from pathlib import Path

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import run_job, setup_globals
from omegaconf import DictConfig, OmegaConf
from omegaconf.basecontainer import BaseContainer

from hydra_plugins.cnnlab_gpus import transport


def main(job_path: str, result_path: str, *ignored: str) -> None:
    """``ignored``: what Lightning's DDP adds when it runs this command again for its other
    ranks (``hydra.run.dir=...``); those ranks run the same job and leave the result to rank 0."""
    with open(job_path, "rb") as f:
        sys_path, blob = pickle.load(f)
    sys.path[:] = sys_path  # so the task's modules import here as they did in the parent
    job = cloudpickle.loads(blob)  # imports the task's modules, which register their resolvers
    imported = dict(BaseContainer._resolvers)
    Singleton.set_state(job["singletons"])
    # The parent's resolvers (one registered in a script's __main__ block exists only there),
    # under the ones this process's imports registered: those are the same, and made here.
    BaseContainer._resolvers.update({**transport.resolvers(job["resolvers"]), **imported})
    setup_globals()
    ret = run_job(
        hydra_context=job["hydra_context"],
        task_function=transport.task(job["task"]),
        config=job["config"],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    failure = transport.failure(ret)
    if os.environ.get("LOCAL_RANK", "0") == "0":
        # Plain configs: structured ones refer to their dataclasses, which Hydra's plugin scan
        # has defined a second time in this process (pickle refuses those).
        ret.cfg, ret.hydra_cfg = (_plain(c) for c in (ret.cfg, ret.hydra_cfg))
        tmp = Path(f"{result_path}.tmp")
        tmp.write_bytes(cloudpickle.dumps((ret, failure)))
        tmp.replace(result_path)


def _plain(config: DictConfig | None) -> DictConfig | None:
    return None if config is None else OmegaConf.create(OmegaConf.to_container(config))


if __name__ == "__main__":
    main(*sys.argv[1:])
