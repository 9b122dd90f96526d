"""The speed options compose with any model and change what a real training run computes."""

import re

import pytest
import torch

from cnnlab.run.assemble import build_datamodule, build_module, build_trainer

from conftest import FAST

TINY = [
    "data=fake",
    "data.image_size=16",
    "data.dataset.train_size=40",
    "data.dataset.test_size=8",
    "data.batch_size=8",
    "trainer.max_steps=2",
    "trainer.limit_val_batches=1",
    *FAST,
]


def fit(make_cfg, *overrides):
    """Train two steps; return the module and what the first convolution saw and gave."""
    cfg = make_cfg([*TINY, *overrides])
    dm, module = build_datamodule(cfg), build_module(cfg)
    dm.setup()
    seen = []
    conv = next(m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    build_trainer(cfg, select_best=dm.has_validation).fit(module, datamodule=dm)
    return module, conv, seen


@pytest.mark.parametrize("model", ["base_cnn", "nin", "resnet10", "timm"])
def test_bf16_and_channels_last_run_with_any_model(model, make_cfg):
    module, conv, seen = fit(
        make_cfg, f"model={model}", "trainer.precision=bf16-mixed", "model.channels_last=true"
    )
    assert seen and all(out.dtype == torch.bfloat16 for _, out in seen)
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x, _ in seen)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.dtype == torch.float32  # mixed: the weights stay float32
    plain = fit(make_cfg, f"model={model}")[2]
    assert plain[0][1].dtype == torch.float32
    assert not plain[0][0].is_contiguous(memory_format=torch.channels_last)


def test_compile_compiles_the_network_and_checkpoints_keep_its_names(make_cfg, tmp_path):
    from torch._dynamo.utils import counters

    counters.clear()
    module, _, seen = fit(make_cfg, "model=cnn_shallow", "model.pool=2", "compile=true")
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo traced the network
    assert seen and torch.isfinite(seen[-1][1]).all()
    ckpt = torch.load(next((tmp_path / "run").rglob("last.ckpt")), weights_only=True)
    assert all(not k.startswith("net._orig_mod") for k in ckpt["state_dict"])
    names = {f"net.{k}" for k in module.net.state_dict()} | {"preprocess.mean", "preprocess.std"}
    assert set(ckpt["state_dict"]) == names


def test_speedrun_recipe_runs_on_a_cpu(make_cfg):
    """The GPU recipe, its GPU-only settings swapped for the CPU: EMA, bf16, channels_last,
    one-cycle, label smoothing, no validation split."""
    cfg_overrides = ["experiment=speedrun", "trainer.accelerator=cpu", "compile=false"]
    module, conv, seen = fit(make_cfg, *cfg_overrides, "trainer.benchmark=false")
    assert seen[0][1].dtype == torch.bfloat16 and conv.weight.is_contiguous(
        memory_format=torch.channels_last
    )
    cfg = make_cfg(["experiment=speedrun"])
    assert cfg.data.val_split == 0 and cfg.label_smoothing == 0.2 and cfg.compile
    assert cfg.callbacks.ema._target_.endswith("EMAWeightAveraging")


class _On:
    """The little of a Trainer that the data module asks: where the model trains."""

    training = True

    def __init__(self, device: str):
        self.strategy = type("Strategy", (), {"root_device": torch.device(device)})()


def test_the_data_set_moves_to_the_training_device_once_unless_told_not_to(make_cfg):
    """'meta' stands in for a GPU: the placement logic is the same for any accelerator."""
    cfg = make_cfg([*TINY])
    dm = build_datamodule(cfg)
    dm.setup()
    dm.trainer = _On("meta")
    loaders = [dm.train_dataloader(), dm.train_dataloader(), dm.test_dataloader()]
    assert all(loader.dataset.images.device.type == "meta" for loader in loaders)
    assert loaders[0].dataset is loaders[1].dataset  # copied once, not every epoch
    assert dm.train_set.images.device.type == "cpu"  # the host copy stays
    off = build_datamodule(make_cfg([*TINY, "data.on_device=false"]))
    off.setup()
    off.trainer = _On("meta")
    assert off.train_dataloader().dataset.images.device.type == "cpu"
    off.trainer = _On("cpu")
    assert off.train_dataloader().dataset is off.train_set


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_batches_are_made_in_its_memory(make_cfg):
    module, _, seen = fit(make_cfg, "trainer=gpu", "model=base_cnn", "augment=imgaug_heavy")
    assert all(x.device.type == "cuda" for x, _ in seen)
    dm = module.trainer.datamodule
    assert all(d.images.device.type == "cuda" for d in dm._placed.values())


def test_the_benchmark_times_both_paths_and_prints_their_ratio_last(capsys, tmp_path, monkeypatch):
    from benchmarks import data_path
    from benchmarks import speed as bench

    monkeypatch.chdir(tmp_path)
    small = ["model=cnn_shallow", "model.pool=2", "data.image_size=16", "~callbacks.progress_bar"]
    # overrides on both sides of the options, as a user adds one to a command line
    bench.main([*small, "--batches", "2", "--rounds", "2", "data.dataset.train_size=200"])
    lines = capsys.readouterr().out.strip().splitlines()
    (used,) = [line for line in lines if line.startswith("overrides: ")]
    assert used.endswith("~callbacks.progress_bar data.dataset.train_size=200")
    rounds = [line for line in lines if line.startswith("round ")]
    assert len(rounds) == 2
    ratios = []
    for line in rounds:
        cnnlab, raw = (float(v.replace(",", "")) for v in re.findall(r"([\d,]+) img/s", line))
        assert cnnlab > 0 and raw > 0
        ratios.append(cnnlab / raw)
        # the end-of-run figures (curves.png) are timed apart, outside the images/s
        assert float(re.search(r"figures: ([\d.]+) s", line)[1]) > 0
    median = (ratios[0] + ratios[1]) / 2  # of two rounds
    assert float(lines[-1].removeprefix("ratio ")) == pytest.approx(median, abs=0.01)
    data_path.main(["--batches", "2", "data.dataset.train_size=600"])
    table = capsys.readouterr().out.splitlines()
    standard = next(line for line in table if line.startswith("standard")).split()
    assert float(standard[1].replace(",", "")) > 0 and float(standard[3]) > 0  # a speed-up


def test_the_benchmark_times_the_timed_epochs_own_checkpoints(tmp_path):
    """Its clock starts once the first epoch's checkpoint is written and stops once the last
    epoch's is: a slow writer's work for epochs 1 and 2 inside, for epoch 0 outside."""
    import time

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.plugins import AsyncCheckpointIO
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from benchmarks.speed import _Clock

    written = []

    class SlowWriter(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            time.sleep(0.3)
            super().save_checkpoint(checkpoint, path)
            written.append(time.perf_counter())

    clock = _Clock()
    L.Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[clock, ModelCheckpoint(tmp_path, save_last=True)],
        plugins=[AsyncCheckpointIO(SlowWriter())],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(BoringModel())
    assert len(written) == 6  # epoch-N.ckpt and last.ckpt after each epoch
    assert written[1] < clock.start < written[2] and written[-1] <= clock.end
