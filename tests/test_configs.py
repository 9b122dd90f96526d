"""Every option of every config group composes and runs one batch of train, val and test."""

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cnnlab import registry
from cnnlab.run.train import run

import disk_formats
from conftest import CONF, FAST

GROUPS = [
    "data",
    "model",
    "activation",
    "init",
    "norm",
    "optimizer",
    "scheduler",
    "augment",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "debug",
]
STUDIES = [f"study/{d.name}" for d in sorted((CONF / "study").iterdir())]
OPTIONS = [(g, p.stem) for g in GROUPS + STUDIES for p in sorted((CONF / g).glob("*.yaml"))]


def _runs(group: str, option: str):
    """The option as a test parameter, marked gpu where it trains on a GPU (the GPU check runs
    those: python src/gpu_check.py)."""
    text = (CONF / group / f"{option}.yaml").read_text()
    gpu = "accelerator: gpu" in text or re.search(r"override /trainer: (gpu|ddp)\b", text)
    gpu = gpu or (group == "trainer" and re.search(r"^  - gpu$", text, re.M))  # on top of gpu
    marks = [pytest.mark.gpu] if gpu else []
    return pytest.param(group, option, marks=marks, id=f"{group}={option}")


def small_data(dataset, root: Path) -> dict[str, object]:
    """Settings that point a data set at a tiny copy, written by ``write_<name>``."""
    if dataset.name == "fake":
        return {
            "data.dataset.train_size": 64,
            "data.dataset.test_size": 16,
            "data.batch_size": 16,
            "data.image_size": 16,
        }
    getattr(disk_formats, f"write_{dataset.name}")(root)
    flags = {f"data.dataset.{key}": False for key in ("verify", "download") if key in dataset}
    subset = {"data.train_subset": 64, "data.test_subset": 16, "data.batch_size": 16}
    if dataset.name == "cifar100":  # 64 images of 100 classes: a 10% stratified split is empty
        subset["data.val_split"] = 0.5
    return {"data.dataset.root": str(root), **flags, **subset}


@pytest.mark.parametrize("kind", ["model", "activation", "init", "norm", "data"])
def test_every_registered_component_has_a_yaml(kind):
    options = {p.stem for p in (CONF / kind).glob("*.yaml")}
    assert set(registry.names(kind)) <= options


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS + STUDIES)


@pytest.mark.parametrize(("group", "option"), [_runs(g, o) for g, o in OPTIONS])
def test_option_runs_fast_dev_run(group, option, make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    # base_cnn on fake data unless the option under test chooses otherwise.
    # A study's rows are added with +study/NAME=ROW, as its experiment's sweep adds them.
    picked = f"+{group}={option}" if group.startswith("study/") else f"{group}={option}"
    # Experiments and studies pick their own model; elsewhere the small base CNN keeps it quick.
    # A study's rows belong to the experiment of the same name.
    own_model = group == "experiment" or group.startswith("study/")
    setup = [f"experiment={group[len('study/') :]}"] if group.startswith("study/") else []
    setup += [] if own_model else ["model=base_cnn"]
    choice = ["data=fake", *setup, picked, *FAST]
    run_length = ["trainer.fast_dev_run=true"]
    if group == "debug":  # the debug options set their own run length; keep it short
        run_length = ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    cfg = make_cfg([*choice, *run_length])
    if cfg.trainer.accelerator == "gpu":
        wanted = cfg.trainer.get("devices")
        if not torch.cuda.is_available():
            pytest.skip("composes; running it needs a CUDA GPU")
        if isinstance(wanted, int) and wanted > torch.cuda.device_count():
            pytest.skip(f"composes; running it needs {wanted} GPUs")
    # Set on the composed config rather than composed again: composing is half of this test's
    # time, and these are plain values, as a command-line override would set them.
    for key, value in small_data(cfg.data.dataset, tmp_path / "disk").items():
        OmegaConf.update(cfg, key, value)
    run(cfg)


def test_trainer_gpu_is_bf16_with_cudnn_benchmark_and_tf32(make_cfg):
    cfg = make_cfg(["trainer=gpu", "experiment=nin_activation_bn_grid"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.benchmark and cfg.matmul_precision == "high"
    assert cfg.trainer.max_epochs == 164  # an experiment's trainer settings still apply
