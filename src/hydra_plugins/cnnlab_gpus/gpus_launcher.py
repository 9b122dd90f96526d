"""``hydra/launcher=gpus``: run a sweep's jobs side by side on the machine's GPUs, each in a fresh
process (nothing of CUDA, W&B or the environment leaks from one job to the next, unlike in a
reused worker pool) that sees only its devices, through Hydra's own ``run_job``: job numbers,
directories, ``.hydra/`` files and return values are those of Hydra's basic launcher."""

import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

from cnnlab import processes
from cnnlab.errors import LaunchError, refuse
from cnnlab.results.progress import Tally
from hydra_plugins.cnnlab_gpus import transport

log = logging.getLogger(__name__)


@dataclass
class GpusLauncherConf:
    _target_: str = "hydra_plugins.cnnlab_gpus.gpus_launcher.GpusLauncher"
    devices: Any = None  # which visible GPUs to use, by index, e.g. [0, 1]; null: all
    jobs_per_gpu: int = 1  # jobs that share one GPU at a time (small models leave it idle)
    gpus_per_job: int = 1  # devices each job sees, for DDP jobs (trainer.devices to match)
    stop_seconds: float = 10.0  # after Ctrl-C, how long jobs get to stop before they are killed


ConfigStore.instance().store(
    group="hydra/launcher", name="gpus", node=GpusLauncherConf, provider="cnnlab"
)


class DevicePool:
    """Which devices have room for another job."""

    def __init__(self, devices: Sequence[str], jobs_per_gpu: int):
        self.load = {device: 0 for device in devices}
        self.capacity = jobs_per_gpu

    def take(self, n: int) -> list[str] | None:
        """``n`` devices with room, the least loaded first; None if there are not ``n``."""
        free = sorted((d for d, k in self.load.items() if k < self.capacity), key=self.load.get)
        if len(free) < n:
            return None
        for device in free[:n]:
            self.load[device] += 1
        return free[:n]

    def give(self, devices: Sequence[str]) -> None:
        for device in devices:
            self.load[device] -= 1


@dataclass
class Job:
    num: int
    overrides: Sequence[str]
    config: DictConfig
    devices: list[str]
    process: subprocess.Popen
    result: Path
    output_dir: Path


class GpusLauncher(Launcher):
    def __init__(self, **options: Any) -> None:
        conf = GpusLauncherConf(**options)
        self.devices = None if conf.devices is None else [str(d) for d in conf.devices]
        self.jobs_per_gpu, self.gpus_per_job = conf.jobs_per_gpu, conf.gpus_per_job
        self.stop_seconds = conf.stop_seconds
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        try:
            devices = self._devices()
        except LaunchError as err:
            refuse(err)
        pool = DevicePool(devices, self.jobs_per_gpu)
        log.info(
            f"Launching {len(job_overrides)} jobs on GPUs {', '.join(devices)}, "
            f"{self.jobs_per_gpu} per GPU, {self.gpus_per_job} GPU(s) each"
        )
        pending = list(enumerate(job_overrides, start=initial_job_idx))
        tally = Tally(len(pending))
        running: list[Job] = []
        results: dict[int, JobReturn] = {}
        with (
            tempfile.TemporaryDirectory(prefix="cnnlab-gpus-") as scratch,
            processes.noted() as stop,
        ):
            try:
                while pending or running:
                    if stop:
                        processes.raise_for(stop[0])
                    while pending and not stop and (held := pool.take(self.gpus_per_job)):
                        num, overrides = pending.pop(0)
                        running.append(self._start(num, overrides, held, Path(scratch)))
                        tally.start(num)
                        log.info(tally.line())
                    for job in [j for j in running if j.process.poll() is not None]:
                        results[job.num] = self._finish(job)
                        pool.give(job.devices)
                        running.remove(job)
                        tally.end(job.num, results[job.num].status == JobStatus.COMPLETED)
                        log.info(tally.line())
                    time.sleep(0.1)
            except BaseException:  # Ctrl-C, SIGTERM, or a failure here: no job outlives us
                processes.stop([job.process for job in running], self.stop_seconds)
                if running:
                    log.error(f"stopped {len(running)} running job(s)")
                raise
        return [results[num] for num in sorted(results)]

    def _devices(self) -> list[str]:
        """The devices to use: ``devices`` index the visible GPUs (``[0, 1]`` under an
        allocation's ``CUDA_VISIBLE_DEVICES=4,5`` are GPUs 4 and 5); by default all of them."""
        if self.gpus_per_job < 1 or self.jobs_per_gpu < 1:
            raise LaunchError("hydra.launcher.gpus_per_job and jobs_per_gpu must be at least 1")
        visible = _visible_devices()
        devices = visible
        if self.devices is not None:
            wrong = [d for d in self.devices if not (d.isdigit() and int(d) < len(visible))]
            if wrong:
                raise LaunchError(
                    f"hydra.launcher.devices={_listed(self.devices)}: {_listed(wrong)} "
                    f"index no visible GPU; {len(visible)} visible "
                    f"({', '.join(visible) or 'none'}): use indices 0 to {len(visible) - 1}"
                    if visible
                    else f"hydra.launcher.devices={_listed(self.devices)}: no GPU is visible"
                )
            devices = [visible[int(d)] for d in self.devices]
        devices = list(dict.fromkeys(devices))  # a device named twice is still one device
        if len(devices) < self.gpus_per_job:
            raise LaunchError(
                f"hydra/launcher=gpus: {self.gpus_per_job} GPU(s) per job but "
                f"{len(devices)} available ({', '.join(devices) or 'none visible'}); "
                "set hydra.launcher.devices=[...] or run without hydra/launcher=gpus"
            )
        return devices

    def _start(self, num: int, overrides: Sequence[str], devices: list[str], scratch: Path) -> Job:
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = num
            config.hydra.job.num = num
        HydraConfig.instance().set_config(config)  # resolves the job's ${hydra.job.num}
        output_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        output_dir.mkdir(parents=True, exist_ok=True)
        with read_write(config.hydra.run):  # Lightning starts a DDP job's other ranks in
            config.hydra.run.dir = str(output_dir)  # hydra.run.dir: the job's, as rank 0's
        job_file, result = scratch / f"{num}.pkl", scratch / f"{num}.result.pkl"
        # OmegaConf's resolvers go by value (cloudpickle, as submitit sends them): one that a
        # script's __main__ block registered exists only in this process.
        singletons = {**Singleton.get_state(), "omegaconf_resolvers": {}}
        job = {
            "config": config,
            "hydra_context": self.hydra_context,
            "singletons": singletons,
            "resolvers": transport.pickled_resolvers(),
            "task": transport.task_reference(self.task_function),
        }
        job_file.write_bytes(pickle.dumps((list(sys.path), cloudpickle.dumps(job))))
        # Inside a SLURM allocation the job must not take itself for a SLURM task: Lightning
        # would then wait for SLURM to start its other DDP ranks.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        with open(output_dir / "launcher.log", "ab") as output:  # a rerun's attempt adds to it
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            header = f"==== job #{num}, GPU {','.join(devices)}, started {started} ====\n"
            output.write(header.encode())
            output.flush()
            child = [sys.executable, "-m", "hydra_plugins.cnnlab_gpus._child", job_file, result]
            process = processes.start([str(a) for a in child], output, env)
        lst = " ".join(filter_overrides(overrides))
        log.info(f"\t#{num} : {lst} (GPU {','.join(devices)}, pid {process.pid})")
        return Job(num, overrides, config, devices, process, result, output_dir)

    def _finish(self, job: Job) -> JobReturn:
        log_file = job.output_dir / "launcher.log"
        if job.result.is_file():
            ret, failure = pickle.loads(job.result.read_bytes())
            if failure is not None:
                ret._return_value = transport.rebuilt(failure)
        else:  # the process died before run_job returned (a crash, a kill, sys.exit)
            ret = JobReturn(
                overrides=list(job.overrides),
                working_dir=str(job.output_dir),
                status=JobStatus.FAILED,
                _return_value=RuntimeError(
                    f"job #{job.num} exited with code {job.process.returncode}; its output is "
                    f"in {log_file}"
                ),
            )
            # run_job never got to its callbacks (a sweep's report among them): call them here.
            HydraConfig.instance().set_config(job.config)
            self.hydra_context.callbacks.on_job_end(config=job.config, job_return=ret)
        if ret.status == JobStatus.FAILED:
            error = ret._return_value
            log.error(f"#{job.num} failed: {type(error).__name__}: {error} (see {log_file})")
        return ret


def _visible_devices() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (indices, UUIDs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    import torch  # only here: the launcher itself never touches CUDA

    return [str(i) for i in range(torch.cuda.device_count())]


def _listed(values: Sequence[str]) -> str:
    return "[" + ",".join(values) + "]"
