"""The image, built from the Dockerfile and run as README.md says: training on mounted data and
logs, a -m grid with compile=true, `podman stop` mid-run and before training, a logs/ mount it
may not write, and pytest inside it.

Built with podman on a local stand-in for the Dockerfile's base image, with the base's torch
(tests/container/build-standin, since no registry may be reachable); skipped, saying why, where
either is missing. The first build takes minutes (pip fetches cnnlab's dependencies); later ones
reuse podman's layers while the sources are unchanged."""

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch

from conftest import FAST, ROOT

PODMAN = shutil.which("podman")
FASHION = Path("/usr/share/datasets/fashion-mnist")
BUILD_STANDIN = ROOT / "tests" / "container" / "build-standin"
STANDIN = subprocess.run([BUILD_STANDIN, "--tag"], capture_output=True, text=True).stdout.strip()
BASE_TORCH = STANDIN.rsplit(":", 1)[1].split("-")[0]  # the Dockerfile's base's torch
IMAGE = "localhost/cnnlab-test:latest"
UID = 1000  # the image's user
FAKE = ["data=fake", "data.dataset.train_size=64", "data.batch_size=16", *FAST]


def _why_not() -> str | None:
    if PODMAN is None:
        return "needs podman (tests/container/setup-podman installs it)"
    exists = subprocess.run([PODMAN, "image", "exists", STANDIN], capture_output=True)
    if exists.returncode != 0:
        return f"needs the base image {STANDIN} (tests/container/build-standin makes it)"
    return None


WHY_NOT = _why_not()
pytestmark = [pytest.mark.container, pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))]


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {args[0]}: {result.returncode}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    """The Dockerfile built on the stand-in base; pip in the build reaches the package index as
    this machine does (its CA bundle mounted in for the build only)."""
    conf = tmp_path_factory.mktemp("build") / "pip.conf"
    conf.write_text("[global]\ncert = /run/host-ca.crt\n")
    podman(
        "build",
        "--network=host",
        "--volume=/etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro",
        f"--volume={conf}:/etc/pip.conf:ro",
        f"--build-arg=BASE={STANDIN}",
        f"--tag={IMAGE}",
        str(ROOT),
        timeout=1800,
    )
    return IMAGE


@pytest.fixture
def mounts(tmp_path) -> tuple[Path, Path, list[str]]:
    """data/ and logs/ as README.md mounts them, writable by the image's user."""
    data, logs = tmp_path / "data", tmp_path / "logs"
    for folder in (data, logs):
        folder.mkdir()
        shutil.chown(folder, UID, UID)
    return data, logs, [f"--volume={data}:/cnnlab/data", f"--volume={logs}:/cnnlab/logs"]


def records(logs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(logs.rglob("metrics.json"))]


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_the_image_trains_on_mounted_data_and_writes_its_run_to_mounted_logs(image, mounts):
    data, logs, volumes = mounts
    shutil.copytree(FASHION, data / "fashion-mnist")
    result = podman(
        "run", "--rm", *volumes, image,
        "experiment=fashion_base_cnn", "data.dataset.root=data/fashion-mnist",
        "trainer.max_epochs=1", "data.train_subset=4000", "data.test_subset=1000", *FAST,
        timeout=600,
    )  # fmt: skip
    (record,) = records(logs)
    assert record["status"] == "finished", result.stderr[-2000:]
    assert record["test_acc"] > 0.6  # ten classes: chance is 0.1
    run_dir = next(logs.glob("fashion_base_cnn/runs/*"))
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_uid == UID  # the user's files
    assert (data / "cache").is_dir()  # the statistics, cached in the mounted data/


def test_a_grid_runs_in_the_image_with_and_without_compile(image, mounts):
    _, logs, volumes = mounts
    podman(
        "run", "--rm", *volumes, image, "-m", *FAKE, "model=cnn_shallow", "model.pool=2",
        "trainer.max_epochs=1", "compile=false,true",
        timeout=900,
    )  # fmt: skip
    found = records(logs)
    assert [r["status"] for r in found] == ["finished", "finished"]
    compiled = [o.lower() for r in found for o in r["overrides"] if o.startswith("compile=")]
    assert sorted(compiled) == ["compile=false", "compile=true"]
    assert len(list(logs.glob("train/multiruns/*/report.md"))) == 1


@pytest.fixture
def detached():
    """``detached(volumes, image, *overrides)`` starts a container and returns its name; each
    is removed at the end of the test, also a failed one (a 100-epoch run is left running)."""
    names = []

    def start(volumes: list[str], image: str, *overrides: str) -> str:
        names.append(f"cnnlab-test-{uuid.uuid4().hex[:8]}")
        podman("run", "--detach", f"--name={names[-1]}", *volumes, image, *overrides)
        return names[-1]

    yield start
    for name in names:
        podman("rm", "--force", "--time=0", name, check=False)


def _exit_code(name: str) -> int:
    podman("wait", name, timeout=120)
    return int(podman("inspect", "--format={{.State.ExitCode}}", name).stdout)


def test_podman_stop_mid_run_leaves_last_ckpt_and_exit_143(image, mounts, detached):
    _, logs, volumes = mounts
    long_run = [*FAKE, "model=base_cnn", "data.dataset.train_size=2000", "trainer.max_epochs=100"]
    name = detached(volumes, image, *long_run)
    deadline = time.monotonic() + 300
    while not list(logs.glob("train/runs/*/checkpoints/last.ckpt")):
        assert time.monotonic() < deadline, podman("logs", name).stderr[-2000:]
        time.sleep(1)
    podman("stop", "--time=60", name, timeout=120)
    assert _exit_code(name) == 128 + 15  # SIGTERM's, not the SIGKILL after the timeout (137)
    (record,) = records(logs)
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    last = next(logs.glob("train/runs/*/checkpoints/last.ckpt"))
    assert torch.load(last, weights_only=True)["global_step"] > 0


def test_podman_stop_before_training_starts_ends_the_container_at_once(image, mounts, detached):
    _, logs, volumes = mounts
    name = detached(volumes, image, *FAKE)
    started = time.monotonic()
    podman("stop", "--time=30", name, timeout=60)
    assert _exit_code(name) == 128 + 15
    assert time.monotonic() - started < 30  # not the SIGKILL after the timeout


def test_a_logs_mount_the_user_cannot_write_is_refused_in_one_line(image, mounts):
    data, logs, _ = mounts
    shutil.chown(logs, 0, 0)
    logs.chmod(0o755)
    volumes = [f"--volume={data}:/cnnlab/data", f"--volume={logs}:/cnnlab/logs"]
    result = podman("run", "--rm", *volumes, image, *FAKE, check=False, timeout=300)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("cnnlab: error: cannot create the run directory /cnnlab/logs/train")
    assert f"writable by user {UID}" in line
    assert list(logs.iterdir()) == []


def test_the_image_keeps_its_bases_torch(image):
    found = podman(
        "run", "--rm", "--entrypoint=python", image, "-c", "import torch; print(torch.__version__)"
    )
    assert found.stdout.strip().split("+")[0] == BASE_TORCH


def test_the_test_suite_collects_inside_the_image_and_its_image_tests_pass(image):
    pytest_in = ["run", "--rm", "--entrypoint=pytest", image, "-p", "no:cacheprovider"]
    collected = podman(*pytest_in, "--collect-only", "-q", timeout=300)
    assert re.search(r"^\d+ tests collected", collected.stdout, re.M), collected.stdout[-2000:]
    podman(*pytest_in, "tests/test_docker.py", "tests/test_versions.py", timeout=300)
