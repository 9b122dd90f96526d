"""src/tune.py: the learning-rate range test and the batch-size finder, on the composed config."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.tuner.lr_finder import _determine_lr_attr_name
from omegaconf import DictConfig

from cnnlab.errors import ConfigError
from cnnlab.run.assemble import build_datamodule, build_module
from cnnlab.tuning.lr_range import read
from cnnlab.tuning.tune import find_batch_size, find_lr, tune, tuning_trainer

from conftest import CONF, ROOT

SMALL = [
    "data=fake",
    "data.image_size=12",
    "data.dataset.train_size=160",
    "data.batch_size=16",
    "model=base_cnn",
    "model.hidden=8",
    "optimizer.lr=0.05",
]


def tune_cfg(root: Path, overrides: list[str]) -> DictConfig:
    """conf/tune.yaml as `python src/tune.py` composes it, writing into root/tune."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        options = [f"paths.root_dir={root}", f"paths.output_dir={root / 'tune'}", *overrides]
        return compose("tune", overrides=[*SMALL, *options])


def built(cfg: DictConfig):
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    module = build_module(cfg)
    return module, datamodule, {k: v.clone() for k, v in module.net.state_dict().items()}


def unchanged(module, weights) -> bool:
    """The network's weights and buffers (the normalisation takes the data's statistics)."""
    now = module.net.state_dict()
    return now.keys() == weights.keys() and all(torch.equal(now[k], weights[k]) for k in now)


def test_the_range_test_writes_its_plot_and_advice_and_leaves_the_model_as_it_was(tmp_path):
    cfg = tune_cfg(tmp_path, ["lr_find.steps=30", "lr_find.min_lr=1e-5", "lr_find.max_lr=10"])
    module, datamodule, weights = built(cfg)
    (tmp_path / "tune").mkdir()
    found = find_lr(cfg, module, datamodule, tmp_path / "tune")
    assert unchanged(module, weights) and module.lr == 0.05  # advice only
    rows = list(csv.DictReader((tmp_path / "tune" / "lr_find.csv").open()))
    rates = [float(r["lr"]) for r in rows]
    assert len(rows) == found["steps"] <= 30
    assert rates[0] == pytest.approx(1e-5)
    steps = [b / a for a, b in zip(rates[1:], rates[2:], strict=False)]
    assert steps == pytest.approx([(10 / 1e-5) ** (1 / 30)] * len(steps), rel=1e-3)  # exponential
    assert found["suggestion"] == pytest.approx(float(found["override"].split("=")[1]))
    losses = [float(r["loss"]) for r in rows]  # each step's own, read by cnnlab.tuning.lr_range
    reading = read(rates, losses, exponential=True)
    assert found["suggestion"] == pytest.approx(rates[reading.suggestion], rel=1e-2)
    assert "training_step" not in vars(module)  # the recording is taken off again
    assert any(r == pytest.approx(found["suggestion"], rel=1e-2) for r in rates)
    assert found["max_lr"] >= found["suggestion"]
    assert found["base_lr"] == pytest.approx(found["max_lr"] / 4, rel=1e-2)
    assert (tmp_path / "tune" / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The schedule it proposes is the one-cycle from a quarter of max_lr up to max_lr.
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        run_cfg = compose("train", overrides=found["one_cycle"].split())
    onecycle = run_cfg.scheduler
    assert onecycle.max_lr == found["max_lr"]
    assert onecycle.max_lr / onecycle.div_factor == pytest.approx(found["base_lr"], rel=1e-2)


def test_lightnings_tuner_finds_the_rate_of_a_cnnlab_module(tmp_path):
    """Lightning #20560: the Tuner looks for `lr` on the module, not in a nested config."""
    cfg = tune_cfg(tmp_path, [])
    module, datamodule, _ = built(cfg)
    assert _determine_lr_attr_name(module) == "lr"
    module.stop_on_nonfinite = False
    found = Tuner(tuning_trainer(cfg, 20)).lr_find(
        module, datamodule=datamodule, num_training=20, update_attr=True
    )
    assert module.lr == found.suggestion() != 0.05
    assert module.hparams.optimizer["lr"] == module.lr  # what configure_optimizers builds from


def test_the_batch_finder_stops_at_the_largest_batch_that_fits(tmp_path, monkeypatch):
    """A model that runs out of memory above 40 images a batch (as CUDA says it): the finder
    doubles to 64, fails, and searches back to at most 40; the rate scales with the batch."""
    cfg = tune_cfg(
        tmp_path, ["find=batch_size", "batch_find.start=4", "batch_find.steps_per_trial=1"]
    )
    module, datamodule, weights = built(cfg)
    plain_step = module.training_step
    tried = []

    def step(batch, batch_idx):
        tried.append(len(batch[0]))
        if len(batch[0]) > 40:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return plain_step(batch, batch_idx)

    monkeypatch.setattr(module, "training_step", step)
    found = find_batch_size(cfg, module, datamodule)
    assert 64 in tried and found["batch_size"] == 40  # the largest that fit: no margin taken
    assert found["limited_by"] == "the device's memory"
    assert found["scaled_lr"] == pytest.approx(0.05 * found["batch_size"] / 16, rel=1e-2)
    assert found["override"] == f"data.batch_size={found['batch_size']} optimizer.lr=" + format(
        0.05 * found["batch_size"] / 16, ".3g"
    )
    assert found["peak_memory_per_image_mib"] is None  # measured on a GPU only
    assert unchanged(module, weights) and datamodule.hparams.batch_size == 16


def test_without_a_memory_limit_the_batch_grows_to_the_training_set(tmp_path):
    cfg = tune_cfg(
        tmp_path, ["find=batch_size", "batch_find.start=64", "batch_find.steps_per_trial=1"]
    )
    module, datamodule, _ = built(cfg)
    found = find_batch_size(cfg, module, datamodule)
    assert found["batch_size"] == len(datamodule.train_set) == 144
    assert found["limited_by"] == "the training set's size"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["find=batch_size", "trainer=ddp"], "the tuner runs in one process on one device"),
        (["lr_find.min_lr=1", "lr_find.max_lr=0.1"], "must be below lr_find.max_lr=0.1"),
        (["find=rate"], "find=rate: expected one of lr, batch_size"),
        # Lightning's Tuner skips its search under fast_dev_run and returns None
        (["find=batch_size", "trainer.fast_dev_run=true"], "fast_dev_run=true: the tuner does"),
        # the Tuner would answer a batch above max_batch
        (["find=batch_size", "batch_find.max_batch=8"], "start=16 is above batch_find.max_batch"),
        (["lr_find=null"], "lr_find=null: expected a mapping"),
        (["batch_find=5"], "batch_find=5: expected a mapping"),
    ],
)
def test_a_tuning_it_cannot_do_is_refused_in_one_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as refused:
        tune(tune_cfg(tmp_path, overrides))
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "tune").exists()  # refused before anything is written


def test_help_on_a_group_lists_a_training_groups_options_and_refuses_others_in_one_line(tmp_path):
    command = [sys.executable, str(ROOT / "src" / "tune.py"), "--help", "lr_find", "find=lr"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("cnnlab: error: --help lr_find: no such group; choose from:")


def test_a_sweep_of_tunings_writes_no_training_report(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("tune", overrides=["hydra.mode=MULTIRUN"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    report = instantiate(cfg.hydra.callbacks.report)
    assert type(report) is Callback  # Hydra's, which does nothing: no job would be "finished"


def test_the_command_prints_the_override_to_paste(tmp_path):
    command = [sys.executable, str(ROOT / "src" / "tune.py"), *SMALL, "lr_find.steps=20"]
    command += [f"paths.root_dir={tmp_path}", "hydra.run.dir=out"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads((tmp_path / "out" / "tune.json").read_text())
    assert f"suggested learning rate: {found['override']}" in result.stdout
    assert found["one_cycle"] in result.stdout
    assert math.isfinite(found["suggestion"]) and (tmp_path / "out" / "lr_find.png").is_file()
    assert not list((tmp_path / "out").glob(".lr_find*"))  # the Tuner's copy of the weights


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_finder_measures_the_memory_each_image_takes(tmp_path):
    cfg = tune_cfg(tmp_path, ["find=batch_size", "trainer=gpu", "data.dataset.train_size=4000"])
    module, datamodule, _ = built(cfg)
    found = find_batch_size(cfg, module, datamodule)
    assert found["device"].startswith("cuda") and found["peak_memory_per_image_mib"] > 0
