"""A real single-node SLURM cluster with accounting, for tests that submit real jobs.

``start(directory)`` runs munged, mariadbd, slurmdbd, slurmctld and slurmd as children of this
process, with every config, socket, spool, state, log and database file under ``directory``
and every port picked free, so a second cluster (or a stale one) on the machine does not clash.
Outside it only the fake GPU device files are made (/dev/fakegpuN, copies of /dev/null: gres
needs a file per GPU). Clients reach the cluster through ``Cluster.env`` (``SLURM_CONF``).
It needs root (the daemons run as root) and the Debian packages slurm-wlm, slurmdbd, munge and
mariadb-server; where it cannot run, ``start`` raises ``ClusterUnavailable`` with the reason.
"""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLUSTER = "cnnlab"
GPUS = 2
# Daemons live in sbin, which a user's (or a venv's) PATH may lack.
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
DB_USER = DB_PASS = "slurm"
SUBDIRS = ["run", "log", "pids", "spool", "state", "db"]


class ClusterUnavailable(Exception):
    """The cluster cannot run here; ``reason`` is one line for pytest.skip."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Cluster:
    directory: Path
    conf: Path
    env: dict[str, str]
    node: str
    cpus: int
    memory_mb: int
    gpus: int
    daemons: list[tuple[str, subprocess.Popen]]

    def run(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A client command against this cluster."""
        return subprocess.run(
            command, env={**os.environ, **self.env}, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def jobs(self) -> list[str]:
        """Ids of the jobs SLURM still holds (pending, running or ending)."""
        return self.run("squeue", "-h", "-o", "%A").stdout.split()

    def release(self, job_id: str) -> None:
        """Let a requeued job start in 2 s, not the ~2 min SLURM holds it back (BeginTime).
        Not at once: slurmd refuses to launch a job whose credential is from the second its
        previous run was killed in ("Job credential revoked"), and the job then fails. The
        update is refused while the job is still being requeued, so retry until it is pending."""
        deadline = time.monotonic() + 30
        while True:
            state = self.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip()
            if state == "PENDING":
                done = self.run("scontrol", "update", f"jobid={job_id}", "StartTime=now+2")
                if done.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not become releasable (state {state!r})")
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel every job, stop the daemons, last started first, then kill what is left."""
        running = {name for name, process in self.daemons if process.poll() is None}
        if {"slurmctld", "slurmd"} <= running:
            try:  # jobs ended by SLURM leave no processes behind and reach the accounting
                if jobs := self.jobs():
                    self.run("scancel", *jobs)
                    _wait(lambda: not self.jobs(), 30)
            except subprocess.TimeoutExpired:
                pass
        for _, process in reversed(self.daemons):
            _end(process)
        self.daemons.clear()
        _end_leftovers(self.directory)
        for pid_file in (self.directory / "pids").glob("*.pid"):
            pid_file.unlink()


def start(directory: Path) -> Cluster:
    """Start a cluster whose files all live in ``directory`` (made if missing): slurm.conf,
    gres.conf and slurmdbd.conf at its top, the daemons' logs in ``log/``."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("the SLURM cluster needs root")
    binaries = {}
    for name in ["munged", "slurmdbd", "slurmctld", "slurmd", "sacctmgr", "sinfo"]:
        binaries[name] = _which(name)
    binaries["mariadbd"] = _which("mariadbd", "mysqld")
    binaries["install_db"] = _which("mariadb-install-db", "mysql_install_db")

    directory = Path(directory).resolve()
    # Unix socket paths are limited to 108 bytes.
    if len(str(directory / "run" / "munge.socket")) > 100:
        raise ClusterUnavailable(f"directory path too long for sockets: {directory}")
    # A directory used before holds a crashed run: end it, and start afresh rather than let
    # slurmctld bring back its jobs and the database its job ids.
    _end_stale(directory)
    for sub in SUBDIRS:
        shutil.rmtree(directory / sub, ignore_errors=True)
        (directory / sub).mkdir(parents=True)
    (directory / "run").chmod(0o755)  # munged insists its socket's folder is open to all
    for i in range(GPUS):
        if not os.path.exists(f"/dev/fakegpu{i}"):  # /dev/null's numbers: opens, reads nothing
            os.mknod(f"/dev/fakegpu{i}", stat.S_IFCHR | 0o666, os.makedev(1, 3))

    node, cpus, real_mb = _hardware(binaries["slurmd"])
    # Less than slurmd reports, so a small drift never drains the node.
    memory_mb = real_mb * 9 // 10
    ports = _free_ports(4)
    conf = _write_config(directory, node, cpus, memory_mb, ports)
    env = {"SLURM_CONF": str(conf)}
    cluster = Cluster(directory, conf, env, node, cpus, memory_mb, GPUS, [])
    try:
        _start_daemons(cluster, binaries, ports)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_daemons(cluster: Cluster, binaries: dict, ports: dict) -> None:
    d = cluster.directory
    launch = lambda name, *args: _launch(cluster, name, binaries[name], *args)  # noqa: E731

    key = d / "munge.key"  # a key of our own leaves /etc/munge alone
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    # --force: munged refuses a socket in folders not searchable by all, as pytest's are
    # (/tmp/pytest-of-root is 0700); every client here is root, so it is safe to override.
    munged = launch(
        "munged", "--foreground", "--force", f"--socket={d}/run/munge.socket",
        f"--key-file={key}", f"--pid-file={d}/run/munged.pid",
        f"--log-file={d}/log/munged.log", f"--seed-file={d}/run/munged.seed",
    )  # fmt: skip
    _ready(cluster, "munged", munged, lambda: (d / "run" / "munge.socket").exists(), 10)

    install = subprocess.run(
        [binaries["install_db"], "--no-defaults", f"--datadir={d}/db", "--user=root",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if install.returncode != 0:
        raise ClusterUnavailable(f"mariadb-install-db failed: {_last_line(install.stderr)}")
    (d / "init.sql").write_text(
        f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}';\n"
        f"GRANT ALL ON slurm_acct_db.* TO '{DB_USER}'@'127.0.0.1';\n"
    )
    mariadbd = launch(
        "mariadbd", "--no-defaults", f"--datadir={d}/db", f"--socket={d}/run/mysqld.sock",
        "--bind-address=127.0.0.1", f"--port={ports['db']}", "--skip-name-resolve",
        f"--pid-file={d}/run/mysqld.pid", f"--log-error={d}/log/mariadbd.log", "--user=root",
        f"--init-file={d}/init.sql",
        # A throwaway database: speed over durability.
        "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
        "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
    )  # fmt: skip
    _ready(cluster, "mariadbd", mariadbd, lambda: _listening(ports["db"]), 30)

    def answers(*command: str) -> bool:
        return cluster.run(*command).returncode == 0

    slurmdbd = launch("slurmdbd", "-D")
    _ready(cluster, "slurmdbd", slurmdbd, lambda: answers("sacctmgr", "-n", "list", "cluster"), 30)
    # Registered before slurmctld starts, so it reports to accounting from its first job.
    added = cluster.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
    if added.returncode != 0:
        why = _last_line(added.stderr + added.stdout)
        raise ClusterUnavailable(f"sacctmgr add cluster failed: {why}")

    slurmctld = launch("slurmctld", "-D")
    _ready(cluster, "slurmctld", slurmctld, lambda: answers("scontrol", "ping"), 30)

    def idle() -> bool:
        state = cluster.run("sinfo", "-h", "-n", cluster.node, "-o", "%T").stdout.strip()
        return state == "idle"

    slurmd = launch("slurmd", "-D")
    _ready(cluster, "slurmd", slurmd, idle, 30)


def _write_config(d: Path, node: str, cpus: int, memory_mb: int, ports: dict) -> Path:
    auth = f"AuthType=auth/munge\nAuthInfo=socket={d}/run/munge.socket\n"
    conf = d / "slurm.conf"
    conf.write_text(
        f"ClusterName={CLUSTER}\n"
        f"SlurmctldHost={node}\n"
        f"SlurmctldPort={ports['ctld']}\n"
        f"SlurmdPort={ports['slurmd']}\n"
        f"SlurmUser=root\nSlurmdUser=root\n{auth}"
        f"StateSaveLocation={d}/state\n"
        f"SlurmdSpoolDir={d}/spool\n"
        f"SlurmctldPidFile={d}/run/slurmctld.pid\n"
        f"SlurmdPidFile={d}/run/slurmd.pid\n"
        f"SlurmctldLogFile={d}/log/slurmctld.log\n"
        f"SlurmdLogFile={d}/log/slurmd.log\n"
        "SlurmctldDebug=info\nSlurmdDebug=info\n"
        # No cgroups in containers: track job processes through /proc, bind nothing.
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
        # Per-CPU allocation, so one-CPU jobs share the node; without DefMemPerCPU a job that
        # asks no memory would be given all of it and run alone.
        "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU_Memory\n"
        f"DefMemPerCPU={memory_mb // cpus}\n"
        "GresTypes=gpu\n"
        # The node as configured here, whatever slurmd finds (sockets, threads, less memory).
        "SlurmdParameters=config_overrides\n"
        "JobRequeue=1\nReturnToService=2\n"
        # Quick to notice, to schedule and to clean up: tests wait on all of these.
        "SlurmdTimeout=10\nMinJobAge=10\nKillWait=5\n"
        "SchedulerType=sched/backfill\nSchedulerParameters=sched_interval=1,bf_interval=1\n"
        "AccountingStorageType=accounting_storage/slurmdbd\n"
        f"AccountingStorageHost=localhost\nAccountingStoragePort={ports['dbd']}\n"
        # Connections to slurmdbd take munge's socket from here, not from AuthInfo.
        f"AccountingStoragePass=socket={d}/run/munge.socket\n"
        "AccountingStorageTRES=gres/gpu\n"
        "JobAcctGatherType=jobacct_gather/none\n"
        f"NodeName={node} CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{GPUS} State=UNKNOWN\n"
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP\n"
    )
    (d / "gres.conf").write_text(f"NodeName={node} Name=gpu File=/dev/fakegpu[0-{GPUS - 1}]\n")
    dbd = d / "slurmdbd.conf"
    dbd.touch(mode=0o600)
    dbd.chmod(0o600)  # slurmdbd refuses a config others can read: it holds the DB password
    dbd.write_text(
        f"{auth}DbdHost=localhost\nDbdPort={ports['dbd']}\nSlurmUser=root\n"
        f"LogFile={d}/log/slurmdbd.log\nPidFile={d}/run/slurmdbd.pid\nDebugLevel=info\n"
        "StorageType=accounting_storage/mysql\n"
        f"StorageHost=127.0.0.1\nStoragePort={ports['db']}\n"
        f"StorageUser={DB_USER}\nStoragePass={DB_PASS}\nStorageLoc=slurm_acct_db\n"
    )
    return conf


def _launch(cluster: Cluster, name: str, binary: str, *args: str) -> subprocess.Popen:
    """A daemon in the foreground as our child, in its own session so a Ctrl-C at the
    terminal leaves it to ``stop``; its pid is recorded to end it after a crash."""
    d = cluster.directory
    with open(d / "log" / f"{name}.out", "ab") as out:
        process = subprocess.Popen(
            [binary, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **cluster.env}, cwd=d, start_new_session=True,
        )  # fmt: skip
    (d / "pids" / f"{name}.pid").write_text(f"{process.pid}\n")
    cluster.daemons.append((name, process))
    return process


def _ready(cluster: Cluster, name: str, process: subprocess.Popen, check, timeout: float) -> None:
    def up():
        if process.poll() is not None:
            log = _log_tail(cluster.directory, name)
            raise ClusterUnavailable(f"{name} exited ({process.returncode}): {log}")
        try:
            return check()
        except subprocess.TimeoutExpired:
            return False

    if not _wait(up, timeout):
        log = _log_tail(cluster.directory, name)
        raise ClusterUnavailable(f"{name} not ready in {timeout:.0f} s: {log}")


def _wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _log_tail(directory: Path, name: str) -> str:
    """The last fatal (else error) line of a daemon's logs, for the skip reason: slurmd logs
    harmless errors at every start (no PMIx library, no state to recover)."""
    lines = []
    for path in [directory / "log" / f"{name}.out", directory / "log" / f"{name}.log"]:
        if path.exists():
            lines += path.read_text(errors="replace").splitlines()
    fatal = [line for line in lines if "fatal" in line.lower()]
    errors = [line for line in lines if "error" in line.lower()]
    return _last_line("\n".join(fatal or errors or lines)) or "no log"


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1].strip() if text.strip() else ""


def _which(*names: str) -> str:
    for name in names:
        if found := shutil.which(name, path=SEARCH):
            return found
    raise ClusterUnavailable(f"{' or '.join(names)} not installed")


def _hardware(slurmd: str) -> tuple[str, int, int]:
    """Node name, CPUs and memory (MB), as slurmd itself sees them."""
    found = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30).stdout
    fields = dict(re.findall(r"(\w+)=(\S+)", found))
    if not {"NodeName", "CPUs", "RealMemory"} <= fields.keys():
        raise ClusterUnavailable(f"slurmd -C printed no node: {_last_line(found)!r}")
    return fields["NodeName"], int(fields["CPUs"]), int(fields["RealMemory"])


def _free_ports(n: int) -> dict[str, int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:  # held open together, so the n are distinct
        s.bind(("", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return dict(zip(["ctld", "slurmd", "dbd", "db"], ports, strict=True))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _end_stale(directory: Path) -> None:
    """End daemons an earlier, crashed run in this directory left behind."""
    for pid_file in (directory / "pids").glob("*.pid"):
        pid = int(pid_file.read_text())
        try:  # the pid may since belong to someone else: only end the daemon named
            if pid_file.stem.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                _kill([pid])
        except FileNotFoundError:
            pass
        pid_file.unlink()
    _end_leftovers(directory)


def _end_leftovers(directory: Path) -> None:
    """Kill what outlived the daemons: slurmstepd (it keeps slurmd's log open) and the jobs'
    processes (they carry this cluster's SLURM_CONF, which sbatch exports)."""
    prefix = str(directory) + "/"
    ours = f"SLURM_CONF={directory}/slurm.conf".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in (os.getpid(), os.getppid()):
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            paths = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if ours in environ or any(path.startswith(prefix) for path in paths):
            found.append(int(proc.name))
    _kill(found)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait(lambda: not any(_alive(pid) for pid in pids), 10)


def _alive(pid: int) -> bool:
    """Running, not a zombie: an orphan's zombie lingers until init gets round to it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
