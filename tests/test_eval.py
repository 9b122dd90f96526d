"""src/eval.py: one checkpoint, ensembles chosen three ways, test-time augmentation."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from cnnlab.callbacks.snapshots import Snapshots, restart_ends
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.inference.ensemble import snapshot_members, sweep_members, translate, tta_views
from cnnlab.inference.evaluate import evaluate
from cnnlab.inference.predict import load_classifier
from cnnlab.run.train import run

from conftest import CONF, FAST, ROOT, compose_cfg
from disk_formats import write_cifar10

JOBS = {  # deliberately different models; job 1 keeps a snapshot after each epoch
    "0": ["model=nin", "trainer.max_epochs=1"],
    "1": ["model=base_cnn", "trainer.max_epochs=2", "callbacks.snapshots.every_n_epochs=1"],
    "2": [
        "model=base_cnn",
        "trainer.max_epochs=3",
        "scheduler=cosine_restarts",
        "scheduler.T_0=1",
        "scheduler.T_mult=2",
        "callbacks.snapshots.at_restarts=true",
    ],
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Three runs on generated CIFAR-10 in <root>/sweep/<job>, as a -m sweep lays them out."""
    root = tmp_path_factory.mktemp("eval")
    write_cifar10(root / "data", per_batch=40, test=60)
    for job, options in JOBS.items():
        common = ["data.dataset.verify=false", "optimizer=adam", "data.batch_size=50", *FAST]
        run(compose_cfg(root, [*common, *options], output_dir=root / "sweep" / job))
    GlobalHydra.instance().clear()
    return root / "sweep"


def eval_cfg(root: Path, overrides: list[str]):
    """conf/eval.yaml as `python src/eval.py` composes it, writing into root/eval."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        options = [f"paths.root_dir={root}", f"output_dir={root / 'eval'}", *overrides]
        return compose("eval", overrides=options)


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def images_of(sweep) -> tuple[torch.Tensor, torch.Tensor]:
    model = load_classifier(sweep / "0" / "checkpoints" / "best.ckpt")
    datamodule = ImageDataModule(**model.data)
    datamodule.setup()
    x, y = datamodule.test_set.images, datamodule.test_set.labels
    assert len(y) == 60
    return x.float() / 255, y


def test_an_ensemble_of_two_different_models_is_their_averaged_softmax(sweep, tmp_path):
    ckpts = [sweep / job / "checkpoints" / "best.ckpt" for job in ("0", "1")]
    result = evaluate(eval_cfg(tmp_path, [f"ckpts=[{ckpts[0]},{ckpts[1]}]"]))
    x, y = images_of(sweep)
    with torch.no_grad():
        probs = [load_classifier(c)(x).softmax(1) for c in ckpts]
    average = (probs[0] + probs[1]) / 2
    assert not torch.allclose(probs[0], probs[1], atol=0.05)  # two different models
    assert result["test_acc"] == pytest.approx((average.argmax(1) == y).float().mean().item())
    assert result["test_loss"] == pytest.approx(F.nll_loss(average.log(), y).item(), rel=1e-5)
    # each member as its own run tested it; the table's last row is the ensemble
    table = result["members"]
    for row, job in zip(table, ("0", "1"), strict=False):
        assert row["acc"] == pytest.approx(metrics(sweep / job)["test_acc"])
        assert row["loss"] == pytest.approx(metrics(sweep / job)["test_loss"], rel=1e-5)
    assert table[2]["member"].startswith("ensemble") and table[2]["acc"] == result["test_acc"]
    out = tmp_path / "eval"
    assert json.loads((out / "metrics.json").read_text())["members"] == table
    assert len((out / "members.md").read_text().splitlines()) == 2 + 3
    assert (out / "figures" / "confusion_matrix.png").is_file()
    assert (out / "figures" / "predictions.png").is_file()
    assert not (out / "figures" / "grad_cam.png").exists()  # one network's layers only


def test_translations_move_the_image_and_reflect_the_edge():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float).reshape(2, 1, 5, 5)
    down_right = translate(x, 1, 2)
    assert torch.equal(down_right[..., 1:, 2:], x[..., :-1, :-2])
    assert torch.equal(down_right[..., 0, 2:], x[..., 1, :-2])  # row -1 reflects row 1
    assert torch.equal(translate(x, -2, 0)[..., :3, :], x[..., 2:, :])
    assert len(tta_views(x, flip=True, shift=1)) == 6 and len(tta_views(x, False, 0)) == 1


def test_tta_averages_the_softmax_over_shifted_and_flipped_views(sweep, tmp_path):
    ckpt = sweep / "1" / "checkpoints" / "best.ckpt"
    result = evaluate(eval_cfg(tmp_path, [f"ckpt={ckpt}", "tta.enabled=true", "tta.shift=2"]))
    assert result["tta"] == {"flip": True, "shift": 2}  # data.hflip 0.5: flips are allowed
    x, y = images_of(sweep)
    model = load_classifier(ckpt)
    moved = [x, translate(x, 2, 2), translate(x, -2, -2)]
    with torch.no_grad():
        probs = torch.stack([model(v).softmax(1) for v in moved + [v.flip(-1) for v in moved]])
    assert result["test_acc"] == pytest.approx((probs.mean(0).argmax(1) == y).float().mean().item())
    (member, ensemble) = result["members"]
    assert member["acc"] == pytest.approx(metrics(sweep / "1")["test_acc"])  # without TTA
    assert member["acc_tta"] == ensemble["acc_tta"] == pytest.approx(result["test_acc"])


def test_the_best_jobs_of_a_sweep_by_validation_accuracy(sweep, tmp_path):
    scores = {job: metrics(sweep / job)["best_val_acc"] for job in JOBS}
    best = sorted(JOBS, key=lambda job: -scores[job])[:2]
    chosen = sweep_members(sweep, 2)
    assert [path for _, path in chosen] == [sweep / j / "checkpoints" / "best.ckpt" for j in best]
    result = evaluate(eval_cfg(tmp_path, [f"sweep={sweep}", "top_k=2"]))
    assert len(result["members"]) == 3
    with pytest.raises(ConfigError, match="no finished job"):
        sweep_members(tmp_path, 2)


def test_snapshots_every_epoch_and_at_the_end_of_each_cosine_cycle(sweep, tmp_path):
    every = snapshot_members(sweep / "1")
    assert [name for name, _ in every] == ["epoch 1", "epoch 2"]
    last = torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=True)
    snap = torch.load(every[1][1], weights_only=True)
    assert "optimizer_states" not in snap  # weights only: a snapshot is small
    for key, tensor in last["state_dict"].items():
        assert torch.equal(tensor, snap["state_dict"][key]), key
    # cycles of 1 and 2 epochs: ends after epochs 1 and 3
    assert [name for name, _ in snapshot_members(sweep / "2")] == ["epoch 1", "epoch 3"]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    restarts = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, 2, 2)
    assert restart_ends(restarts, 15) == [2, 6, 14]
    result = evaluate(eval_cfg(tmp_path, [f"snapshots={sweep / '1'}"]))
    assert [row["member"] for row in result["members"]] == [
        "epoch 1",
        "epoch 2",
        "ensemble (mean softmax)",
    ]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 5)
    no_cycles = SimpleNamespace(
        max_epochs=5, lr_scheduler_configs=[SimpleNamespace(scheduler=cosine, interval="epoch")]
    )
    with pytest.raises(ConfigError, match="needs scheduler=cosine_restarts"):
        Snapshots(at_restarts=True).on_fit_start(no_cycles, None)


def test_the_command_tests_one_checkpoint_and_refuses_bad_input_in_one_line(sweep, tmp_path):
    ckpt = sweep / "1" / "checkpoints" / "best.ckpt"
    root = sweep.parent

    def eval_py(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "src/eval.py", f"paths.root_dir={root}", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    out = tmp_path / "one"
    done = eval_py(
        f"ckpt={ckpt}",
        f"hydra.run.dir={out}",
        "data=cifar10",
        "data.dataset.verify=false",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["test_acc"] == pytest.approx(
        metrics(sweep / "1")["test_acc"]
    )
    for name in ("confusion_matrix", "predictions", "filters", "grad_cam"):
        assert (out / "figures" / f"{name}.png").is_file(), name
    refused = tmp_path / "refused"  # a user's mistake: one line, exit 2, no directory left
    done = eval_py(f"ckpt={ckpt}", "data=mnist", f"hydra.run.dir={refused}")
    assert done.returncode == 2 and not refused.exists()
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "data=mnist has in_channels=1, the model 3" in done.stderr


@pytest.mark.parametrize(
    "options, message",
    [
        (["ckpt={ckpt}", "ckpts=[{ckpt}]"], "name the checkpoints one way"),
        (["ckpt={missing}"], "no such checkpoint file"),
        (["ckpt={ckpt}", "tta.enabled=true", "tta.shift=16"], "tta.shift=16: a whole number"),
        (["ckpt={ckpt}", "tta.enabled=true", "tta.flip=sometimes"], "tta.flip=sometimes"),
        (["ckpt={ckpt}", "device=tpu"], "device=tpu: expected one of auto, cpu, gpu, cuda"),
        (["ckpt={ckpt}", "batch_size=0"], "batch_size=0: expected an integer >= 1"),
        (["ckpt={ckpt}", "top_k=abc"], "top_k=abc: expected an integer >= 1"),
        (["ckpt={ckpt}", "tta.shift=-1"], "tta.shift=-1: expected an integer >= 0"),
        (["ckpt={ckpt}", "ckpts=abc"], "ckpts=abc: expected a list of strings or null"),
        (["ckpt={ckpt}", "callbacks.predictions.images=0"], "callbacks.predictions.images=0: "),
    ],
)
def test_bad_input_is_refused_before_anything_runs(sweep, tmp_path, options, message):
    paths = {"ckpt": sweep / "1" / "checkpoints" / "best.ckpt", "missing": tmp_path / "no.ckpt"}
    with pytest.raises(ConfigError, match=message):
        evaluate(eval_cfg(tmp_path, [option.format(**paths) for option in options]))
    assert not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without a GPU")
def test_a_gpu_asked_for_where_there_is_none_is_refused_in_one_line(sweep, tmp_path):
    ckpt = sweep / "1" / "checkpoints" / "best.ckpt"
    with pytest.raises(
        ConfigError, match="^device=gpu: no CUDA GPU is visible here; use device=cpu$"
    ):
        evaluate(eval_cfg(tmp_path, [f"ckpt={ckpt}", "device=gpu"]))


def test_an_ensemble_takes_only_models_of_the_same_images_and_classes():
    from cnnlab.inference.ensemble import Ensemble
    from cnnlab.training.module import Classifier

    parts = {"model": {"name": "cnn_shallow"}, "activation": {"name": "relu"}}
    parts |= {"norm": {"name": "none"}, "init": {"name": "he"}}
    shape = {"in_channels": 3, "image_size": 32}
    ten, hundred = (
        Classifier(**parts, optimizer={}, data={**shape, "num_classes": n}) for n in (10, 100)
    )
    with pytest.raises(ConfigError, match=r"differ in num_classes \(10 and 100\)"):
        Ensemble([ten, hundred])
