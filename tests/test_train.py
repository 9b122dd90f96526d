"""Whole runs, in process and through the command line, as a user starts them."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from cnnlab.data.cifar import cifar10
from cnnlab.data.fake import fake
from cnnlab.data.split import stratified_split
from cnnlab.data.stats import channel_stats
from cnnlab.errors import ConfigError
from cnnlab.run.assemble import build_datamodule, build_module, build_trainer
from cnnlab.run.train import run
from cnnlab.training.module import Classifier

import wandb_records
from conftest import CONF, FAST, ROOT, TINY_DATA, evaluate
from disk_formats import write_cifar10

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("activation", ["relu", "maxout"])
def test_learns_a_separable_task_well_above_chance(activation, make_cfg, tmp_path):
    write_cifar10(tmp_path / "data", per_batch=200, test=200)
    cfg = make_cfg(
        [
            "model=base_cnn",
            f"activation={activation}",
            "optimizer=adam",
            "scheduler=none",
            "augment=none",
            "data.dataset.verify=false",
            "data.batch_size=50",
            "trainer.max_epochs=3",
            *FAST,
        ]
    )
    run(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_acc"] >= 0.6  # chance is 0.1
    assert metrics["best_val_acc"] >= 0.6
    assert metrics["epochs"] == 3
    if activation == "relu":
        assert metrics["params"] == 1_251_242  # base CNN + BN (default norm)
    assert metrics["choices"]["model"] == "base_cnn"


def epoch_metric(out: Path, key: str) -> list[float]:
    """One value per epoch of ``key`` from the run's CSV log."""
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    return [float(r[key]) for r in rows if r.get(key)]


def test_the_best_checkpoint_is_the_one_tested_and_scored_by_plain_cross_entropy(
    make_cfg, tmp_path
):
    # Label smoothing is what training optimises; test_loss is the plain NLL all the same.
    overrides = ["data=fake", "model=base_cnn", "label_smoothing=0.3", "trainer.max_epochs=3"]
    cfg = make_cfg([*overrides, *FAST])
    run(cfg)
    out = tmp_path / "run"
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(out / "checkpoints" / "best.ckpt")
    assert set(metrics) >= {"best_val_acc", "test_acc", "epochs", "wall_time_s", "params"}
    val_acc = epoch_metric(out, "val/acc")
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert len(val_acc) == 3 and best["epoch"] == val_acc.index(max(val_acc))
    assert metrics["best_val_acc"] == pytest.approx(max(val_acc))
    acc, loss = evaluate(out / "checkpoints" / "best.ckpt", cfg)
    assert metrics["test_acc"] == pytest.approx(acc) and metrics["test_loss"] == pytest.approx(loss)


def test_without_a_best_checkpoint_the_final_weights_are_tested_and_the_record_says_so(
    make_cfg, tmp_path, caplog
):
    # a held-out split, but validation never runs: no epoch is "best"
    cfg = make_cfg(
        [
            "data=fake",
            "model=base_cnn",
            "trainer.max_epochs=2",
            "trainer.limit_val_batches=0",
            *FAST,
        ]
    )
    run(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["checkpoint"] is None and metrics["best_val_acc"] is None
    why = "no best checkpoint: validation never ran (val/acc never measured)"
    assert metrics["checkpoint_missing"] == why
    assert f"the final weights are tested: {why}" in caplog.text
    assert not (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()
    final = tmp_path / "run" / "checkpoints" / "last.ckpt"  # the final weights, as tested
    acc, loss = evaluate(final, cfg)
    assert metrics["test_acc"] == pytest.approx(acc) and metrics["test_loss"] == pytest.approx(loss)


class BatchLosses(Callback):
    """Each training batch's (epoch, loss, images)."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append((trainer.current_epoch, outputs["loss"].item(), len(batch[0])))


def test_the_logged_training_loss_is_each_epochs_mean_over_images(make_cfg, tmp_path):
    cfg = make_cfg(
        [
            *TINY_DATA,
            "data.dataset.train_size=20",
            "data.val_split=0",
            "trainer.max_epochs=2",
            "+callbacks.spy._target_=test_train.BatchLosses",
        ]
    )
    module = build_module(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    trainer = build_trainer(cfg, select_best=False)
    trainer.fit(module, datamodule=datamodule)
    (spy,) = [c for c in trainer.callbacks if isinstance(c, BatchLosses)]
    assert [n for _, _, n in spy.seen] == [8, 8, 4] * 2  # the last batch of each is smaller
    for epoch, logged in enumerate(epoch_metric(tmp_path / "run", "train/loss")):
        batches = [(loss, n) for e, loss, n in spy.seen if e == epoch]
        mean = sum(loss * n for loss, n in batches) / sum(n for _, n in batches)
        assert logged == pytest.approx(mean, rel=1e-5)
    acc = epoch_metric(tmp_path / "run", "train/acc")
    assert len(acc) == 2 and all(0 <= a <= 1 for a in acc)


def test_a_checkpoint_alone_classifies_raw_images(make_cfg, tmp_path):
    write_cifar10(tmp_path / "data", per_batch=40, test=100)
    options = ["data.dataset.verify=false", "augment=none", "trainer.max_epochs=1", *FAST]
    run(make_cfg(["model=base_cnn", "activation=elu", *options]))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    path = tmp_path / "run" / "checkpoints" / "best.ckpt"
    module = Classifier.load_from_checkpoint(path).eval()  # no config, no data module
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert any(isinstance(m, torch.nn.ELU) for m in module.modules())
    assert all(torch.equal(v, saved[k]) for k, v in module.state_dict().items())
    raw = cifar10(str(tmp_path / "data"), verify=False)
    stats = channel_stats(raw.train_images[stratified_split(raw.train_labels, 0.1, 0)[0]])
    assert torch.allclose(module.preprocess.mean.flatten(), stats["mean"])  # the training split's
    assert torch.allclose(module.preprocess.std.flatten(), stats["std"])
    assert module.class_names == raw.classes and module.class_names[0] == "airplane"
    with torch.no_grad():
        predicted = module(raw.test_images).argmax(1)  # uint8 images, as read from disk
    accuracy = (predicted == raw.test_labels).float().mean().item()
    assert accuracy == pytest.approx(metrics["test_acc"])
    zca = ["data=fake", "data.image_size=12", "preprocess=zca", "trainer.max_epochs=1", *FAST]
    run(make_cfg([*zca, "model=base_cnn", f"paths.output_dir={tmp_path / 'zca'}"]))
    module = Classifier.load_from_checkpoint(tmp_path / "zca" / "checkpoints" / "best.ckpt")
    raw = fake(test_size=128, image_size=12)
    with torch.no_grad():
        accuracy = (module.eval()(raw.test_images).argmax(1) == raw.test_labels).float().mean()
    assert module.preprocess.matrix.abs().sum() > 0
    test_acc = json.loads((tmp_path / "zca" / "metrics.json").read_text())["test_acc"]
    assert accuracy.item() == pytest.approx(test_acc)


def test_same_seed_same_result(make_cfg, tmp_path):
    def test_loss(seed, out):
        tiny = ["data=fake", "model=base_cnn", "trainer.max_epochs=1", *FAST]
        run(make_cfg([*tiny, f"seed={seed}", f"paths.output_dir={tmp_path / out}"]))
        return json.loads((tmp_path / out / "metrics.json").read_text())["test_loss"]

    first = test_loss(1, "a")
    assert test_loss(1, "b") == first
    assert test_loss(2, "c") != first


def test_without_validation_the_last_epoch_is_tested(make_cfg, tmp_path):
    cfg = make_cfg(
        ["data=fake", "model=base_cnn", "data.val_split=0", "trainer.max_epochs=2", *FAST]
    )
    run(cfg)
    out = tmp_path / "run"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_val_acc"] is None and metrics["epochs"] == 2
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"]
    assert metrics["checkpoint"] == str(out / "checkpoints" / "last.ckpt")
    assert torch.load(metrics["checkpoint"], weights_only=True)["global_step"] == 2 * 8  # all steps
    acc, loss = evaluate(out / "checkpoints" / "last.ckpt", cfg)
    assert metrics["test_acc"] == pytest.approx(acc) and metrics["test_loss"] == pytest.approx(loss)


def test_validating_on_the_test_set_draws_test_curves_and_selects_nothing(make_cfg, tmp_path):
    reference = "reference={test_acc:0.9167,source:'NIN lab report, Table 2'}"
    overrides = ["data=fake", "model=base_cnn", "data.val_split=0", "data.val_on_test=true"]
    try:
        run(
            make_cfg(
                [*overrides, reference, "matmul_precision=medium", "trainer.max_epochs=2", *FAST]
            )
        )
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")
    out = tmp_path / "run"
    metrics = json.loads((out / "metrics.json").read_text())
    curve = epoch_metric(out, "val_on_test/acc")
    assert len(curve) == 2 and not epoch_metric(out, "val/acc")
    assert metrics["test_acc"] == pytest.approx(curve[-1])  # the same images, the same weights
    assert metrics["best_val_acc"] is None
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"]
    assert metrics["reference"] == {"test_acc": 0.9167, "source": "NIN lab report, Table 2"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["reference=0.9"], "reference=0.9: expected a mapping or null"),
        (
            [
                "data.val_split=0",
                "data.val_on_test=true",
                "callbacks.model_checkpoint.monitor=val_on_test/acc",
            ],
            "nothing may be chosen or scheduled on the test set",
        ),
        (["scheduler=plateau", "data.val_split=0"], "the schedule watches val/loss, which needs"),
        (["+data.colour=1"], "data has no option colour; it takes: dataset, num_classes"),
        (["resume=missing.ckpt"], "resume=missing.ckpt: no such checkpoint"),
    ],
)
def test_config_mistakes_stop_the_run_before_it_trains(overrides, message, make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run(make_cfg(["data=fake", "model=base_cnn", *overrides, *FAST]))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_failed_job_closes_its_wandb_run_as_failed(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")

    def crash(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr("cnnlab.run.train.fit_and_test", crash)
    with pytest.raises(RuntimeError, match="out of memory"):
        run(make_cfg(["data=fake", "model=base_cnn", "logger=wandb", *FAST]))
    import wandb

    assert wandb.run is None  # the next job of a sweep starts its own
    (path,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    assert wandb_records.summary(path)["exit_code"] == 1


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_base_cnn_reaches_80_percent_in_one_epoch(make_cfg, tmp_path):
    cfg = make_cfg(
        [
            "experiment=fashion_base_cnn",
            "trainer.max_epochs=1",
            "data.train_subset=20000",
            "data.test_subset=2000",
            "data.batch_size=64",
            *FAST,
        ]
    )
    run(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_acc"] >= 0.80


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_the_default_nin_without_bn_trains_on_real_images(make_cfg, tmp_path):
    """The README's grid (model=nin activation=elu,relu norm=bn,none) at the default lr 0.1:
    on real images its norm=none jobs once reached a NaN loss within a few steps (relu here,
    the slower of the two to learn)."""
    cfg = make_cfg(
        [
            "data=fashion_mnist",
            "model=nin",
            "activation=relu",
            "norm=none",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=40",
            "trainer.limit_val_batches=1",
            "data.batch_size=64",
            "data.test_subset=500",
            *FAST,
        ]
    )
    run(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    train_loss = epoch_metric(tmp_path / "run", "train/loss")
    assert all(math.isfinite(v) for v in [*train_loss, metrics["test_loss"]])
    assert metrics["test_acc"] >= 0.25  # chance is 0.1; 0.33 (relu) here


def train_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **env}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def sweep_choices(tmp_path: Path, task: str, groups: tuple[str, ...]) -> list[tuple]:
    """What each job of the sweep chose in ``groups``, from its metrics.json."""
    found = (tmp_path / "logs" / task / "multiruns").glob("*/*/metrics.json")
    return [tuple(json.loads(p.read_text())["choices"][g] for g in groups) for p in found]


@pytest.mark.slow
def test_grid_from_the_command_line_runs_every_job_as_its_own_wandb_run(tmp_path):
    grid = ["-m", "model=nin", "activation=elu,relu", "norm=bn,none", "trainer.max_epochs=2"]
    result = train_cli(*grid, *TINY_DATA, "logger=wandb", cwd=tmp_path, WANDB_MODE="offline")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sweep_choices(tmp_path, "train", ("activation", "norm"))
    assert sorted(runs) == [("elu", "bn"), ("elu", "none"), ("relu", "bn"), ("relu", "none")]

    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    files = sorted(sweep.glob("*/wandb/offline-run-*/run-*.wandb"))
    found = [wandb_records.summary(path) for path in files]
    assert len(found) == 4 and len({r["id"] for r in found}) == 4  # one W&B run per job
    assert {r["group"] for r in found} == {f"train/{sweep.name}"}  # one group per sweep
    names = sorted(r["name"] for r in found)
    assert names == [f"activation={a},norm={n}" for a in ("elu", "relu") for n in ("bn", "none")]
    for r in found:
        activation, norm = (part.split("=")[1] for part in r["name"].split(","))
        assert r["config"]["activation"]["name"] == activation and r["job_type"] == "train"
        assert {f"norm={norm}", "model=nin"} <= set(r["tags"]) and r["exit_code"] == 0
        # Its own rows only: one job's steps (2 epochs of 4 batches), counted from 0 once.
        assert [row["_step"] for row in r["history"]] == list(range(len(r["history"])))
        assert max(row.get("trainer/global_step", 0) for row in r["history"]) == 8


def test_help_lists_groups_and_choices(tmp_path):
    result = train_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for group in ("activation", "norm", "init", "model"):
        options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        assert f"{group}: {', '.join(options)}" in result.stdout


@pytest.mark.slow
def test_nin_activation_bn_grid_runs_the_nin_lab_reports_ten_models(tmp_path):
    sweep = ["-m", "experiment=nin_activation_bn_grid", "trainer.fast_dev_run=true"]
    result = train_cli(*sweep, *TINY_DATA, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sweep_choices(tmp_path, "nin_activation_bn_grid", ("activation", "norm", "init"))
    grid = {(a, n, i) for a in ("relu", "elu") for n in ("bn", "none") for i in ("he", "xavier")}
    assert len(runs) == 10
    assert set(runs) == grid | {("leaky_relu", "bn", "he"), ("maxout", "bn", "he")}
    # The sweep's report prints each row's published result beside the measured one.
    (report,) = (tmp_path / "logs" / "nin_activation_bn_grid" / "multiruns").glob("*/report.md")
    lines = [line for line in report.read_text().splitlines() if line.startswith("|")]
    # a column for each group the studies' rows set, and the settings that differ under them
    # (He init draws from a normal distribution, Keras' default from a uniform one)
    head = "| study/nin_activation_bn_grid | norm | init | activation | init.distribution | test"
    assert lines[0].startswith(head)
    row = next(line for line in lines if line.startswith("| elu_bn_wi | bn | he | elu | normal |"))
    assert "test_acc 91.67: one run: no interval (NIN lab report, Table 2)" in row
    assert len(lines) == 2 + 10 and (report.parent / "curves.png").stat().st_size > 0
