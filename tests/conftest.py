"""Compose the real config tree for tests, with every path inside the test's temp directory."""

import os
from pathlib import Path

# pytest-xdist runs one worker per core (pyproject's addopts). Each worker, and the jobs its
# tests start, gets its share of the cores as threads: two workers of two threads each on two
# cores slowed a training test 4.7x (40 s alone, 187 s beside another). Set before torch loads;
# the cores counted as pytest-xdist counts them: those this process may use (SLURM, taskset).
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // int(workers))))

import random

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from cnnlab import CONF  # noqa: F401  (the tests import it from here)
from cnnlab.config.job import compose

from disk_formats import write_cifar10, write_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]

# Small, quiet, single-process runs: a test composes these after its own choices.
FAST = [
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "~callbacks.confusion_matrix",
    "~callbacks.predictions",
    "~callbacks.curves",
    "~callbacks.filters",
    "~callbacks.augment_examples",
]

# Tiny, quiet runs for the command line: 32 random 16x16 images.
TINY_DATA = [
    "data=fake",
    "data.image_size=16",
    "data.dataset.train_size=32",
    "data.dataset.test_size=8",
    "data.batch_size=8",
    *FAST,
]


def seed_all(seed: int) -> None:
    """Seed every global generator a test may draw from: torch's, numpy's (timm's Mixup draws
    its lambda and box there) and Python's."""
    import torch  # here, not above: the launcher tests' job processes import this module

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(autouse=True)
def fresh_random_state():
    """Each test starts from the same random state, whatever ran before it on its worker (and
    in whatever order pytest-randomly runs them): no test depends on another's draws."""
    seed_all(0)


def compose_cfg(root: Path, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """conf/train.yaml composed as `python src/train.py` would, with every path under ``root``
    and the run in ``output_dir`` (default ``root/run``)."""
    GlobalHydra.instance().clear()
    paths = [f"paths.root_dir={root}", f"paths.output_dir={output_dir or root / 'run'}"]
    cfg = compose([*paths, *overrides], hydra=True)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path):
    """``make_cfg(["model=nin", ...])`` composes conf/train.yaml as `python src/train.py` would."""

    def make(overrides: list[str]) -> DictConfig:
        return compose_cfg(tmp_path, overrides)

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    """A generated CIFAR-10 in tmp_path/data, where data=cifar10 looks by default."""
    write_cifar10(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def fashion_dir(tmp_path: Path) -> Path:
    return write_fashion_mnist(tmp_path / "fashion")


def evaluate(checkpoint: Path, cfg: DictConfig) -> tuple[float, float]:
    """Accuracy and mean loss of a checkpoint on the run's test set, in this one process and
    outside Lightning."""
    import torch  # here, not above: the launcher tests' job processes import this module

    from cnnlab.run.assemble import build_datamodule
    from cnnlab.training.module import Classifier

    module = Classifier.load_from_checkpoint(checkpoint).eval()
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    correct, loss, n = 0, 0.0, 0
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            images, labels = datamodule.on_after_batch_transfer(batch, 0)
            logits = module(images)
            correct += (logits.argmax(1) == labels).sum().item()
            loss += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            n += len(labels)
    return correct / n, loss / n
