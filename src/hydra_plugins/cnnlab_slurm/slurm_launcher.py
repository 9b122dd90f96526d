"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, with what a real cluster
showed it lacks. A request no node of the partition can hold is refused before anything is submitted
(SLURM may accept such an array and leave it pending for ever); a job that pends for a reason that
can never clear is cancelled; every job is waited for (submitit's launcher raises at the first job
that ended without a result, killed or out of memory, and stops watching the others). ``launch`` is
submitit's own but for its last line, the wait."""

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf, open_dict

from cnnlab.errors import LaunchError, first_line, refuse

log = logging.getLogger(__name__)

# Pending reasons that no amount of waiting clears (squeue's %r).
NEVER = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
}
POLL_S = 2.0  # how often to look at the jobs (submitit asks sacct itself, and less often)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        try:
            check_fits(self.params)
        except LaunchError as err:
            refuse(err)
        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in generic else f"slurm_{k}": v for k, v in params.items()}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        job_params = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
            state = Singleton.get_state()
            job_params.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", state))
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        return self._wait(jobs, job_overrides, initial_job_idx)

    def _wait(self, jobs: list, job_overrides, first: int) -> list[JobReturn]:
        results: dict[int, JobReturn] = {}
        while len(results) < len(jobs):
            stuck = _never_scheduled([j.job_id for j in jobs])
            for num, job in enumerate(jobs, start=first):
                if num in results:
                    continue
                overrides = list(job_overrides[num - first])
                if job.job_id in stuck:
                    job.cancel(check=False)
                    why = f"cannot be scheduled ({stuck[job.job_id]}): cancelled"
                    results[num] = self._failed(num, overrides, f"job #{num} {why}")
                elif job.done():
                    results[num] = self._result(job, num, overrides)
            time.sleep(POLL_S if len(results) < len(jobs) else 0)
        failed = [n for n, r in results.items() if r.status == JobStatus.FAILED]
        if failed:
            log.error(f"{len(failed)} of {len(jobs)} jobs failed: #{', #'.join(map(str, failed))}")
        return [results[num] for num in sorted(results)]

    def _result(self, job, num: int, overrides: list[str]) -> JobReturn:
        try:
            ret = job.results()[0]
        except Exception as error:  # noqa: BLE001 - ended without a result: killed, cancelled
            return self._failed(num, overrides, f"job #{num} ({job.job_id}): {first_line(error)}")
        if ret.status == JobStatus.FAILED:
            log.error(f"#{num} ({job.job_id}) failed: {ret._return_value}")
        return ret

    def _failed(self, num: int, overrides: list[str], message: str) -> JobReturn:
        """A job that could not return its own JobReturn: recorded failed, and the end
        callbacks its process never got to (the sweep's report) called here."""
        log.error(message)
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.num = num
            config.hydra.job.id = f"job_id_for_{num}"
        HydraConfig.instance().set_config(config)
        job_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        ret = JobReturn(
            overrides=overrides,
            cfg=config,
            hydra_cfg=config,
            working_dir=str(job_dir),
            status=JobStatus.FAILED,
            _return_value=RuntimeError(message),
        )
        self.hydra_context.callbacks.on_job_end(config=config, job_return=ret)
        return ret


def check_fits(params: dict[str, Any]) -> None:
    """Refuse, in one line, a job that no node of the partition can hold (``sinfo``'s CPUs,
    memory and GPUs per node). Without ``sinfo`` (or if it fails) nothing is checked."""
    partition = params.get("partition")
    nodes = _nodes(partition)
    if nodes is None:
        return
    where = f"partition {partition}" if partition else "the default partition"
    if not nodes:
        raise LaunchError(f"hydra.launcher.partition={partition}: sinfo lists no such partition")
    cpus = (params.get("cpus_per_task") or 1) * (params.get("tasks_per_node") or 1)
    memory_mb = (params.get("mem_gb") or 0) * 1024
    gpus = params.get("gpus_per_node") or 0
    if any(n["cpus"] >= cpus and n["memory_mb"] >= memory_mb and n["gpus"] >= gpus for n in nodes):
        return
    most = {key: max(n[key] for n in nodes) for key in ("cpus", "memory_mb", "gpus")}
    raise LaunchError(
        f"hydra/launcher=slurm: each job asks for {cpus} CPUs (cpus_per_task x tasks_per_node), "
        f"mem_gb={params.get('mem_gb')} and gpus_per_node={gpus}, but no node of {where} has "
        f"that (at most {most['cpus']} CPUs, {most['memory_mb'] // 1024} GB, {most['gpus']} "
        "GPUs): lower hydra.launcher.cpus_per_task, mem_gb or gpus_per_node"
    )


def _nodes(partition: str | None) -> list[dict[str, int]] | None:
    """The nodes of ``partition`` (or of the default one) as sinfo reports them."""
    if shutil.which("sinfo") is None:
        return None
    command = ["sinfo", "--noheader", "--Node", "--format=%c|%m|%G|%P"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        log.warning(f"sinfo failed ({error}): the job's resources are not checked")
        return None
    nodes = []
    for line in done.stdout.splitlines():
        cpus, memory, gres, name = line.strip().split("|")
        default = name.endswith("*")  # sinfo marks the default partition so
        if name.rstrip("*") == partition or (partition is None and default):
            gpus = sum(int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres))
            nodes.append({"cpus": int(cpus), "memory_mb": int(memory), "gpus": gpus})
    return nodes


def _never_scheduled(job_ids: list[str]) -> dict[str, str]:
    """The jobs among ``job_ids`` that pend for a reason waiting cannot clear."""
    if shutil.which("squeue") is None or not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    command = ["squeue", "--noheader", "--array", "--format=%i|%T|%r", f"--jobs={','.join(arrays)}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    stuck = {}
    for line in done.stdout.splitlines():
        job_id, state, reason = (part.strip() for part in line.split("|"))
        if state == "PENDING" and reason in NEVER:
            stuck[job_id] = f"Reason={reason}"
    return stuck
