"""The figures of a run (callbacks=figures: the default ones, Grad-CAM, histograms, dead units):
written into the run directory and logged to W&B and TensorBoard."""

import csv
import json
from pathlib import Path

import matplotlib.image
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from cnnlab import registry
from cnnlab.callbacks.confusion import class_report
from cnnlab.callbacks.dead_units import dead_units
from cnnlab.callbacks.gradcam import grad_cam
from cnnlab.data.cifar import cifar10
from cnnlab.files import epoch_series
from cnnlab.inference.predict import load_classifier
from cnnlab.layers.activations import is_activation
from cnnlab.run.train import run
from cnnlab.training.module import Classifier

import wandb_records
from conftest import compose_cfg
from disk_formats import write_cifar10

DEFAULT = ("confusion_matrix", "predictions", "curves", "filters", "augment_examples")
FIGURES = (*DEFAULT, "grad_cam", "histograms", "dead_units")


@pytest.fixture(scope="module")
def figured_run(tmp_path_factory) -> Path:
    """One small base CNN run on generated CIFAR-10 with callbacks=figures, logged to an
    offline W&B run and TensorBoard."""
    root = tmp_path_factory.mktemp("figures")
    write_cifar10(root / "data", per_batch=40, test=100)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        overrides = [
            "model=base_cnn",
            "optimizer=adam",
            "scheduler=none",
            "data.dataset.verify=false",
            "data.batch_size=50",
            "trainer.max_epochs=2",
            "logger=[wandb,tensorboard]",
            "callbacks=figures",
            "~callbacks.progress_bar",
        ]
        run(compose_cfg(root, overrides))
    return root / "run"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG that matplotlib can read back."""
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image.shape[1], image.shape[0]


def test_every_figure_is_a_readable_png_of_its_size(figured_run):
    expected = {  # matplotlib's figsize x 100 dpi
        "predictions": (960, 1160),
        "filters": (600, 600),
        "curves": (1500, 400),
        "augment_examples": (1280, 680),
        "grad_cam": (1200, 1680),  # 8 images by the image and the base CNN's 5 stages
        "histograms": (1000, 1080),  # its 6 kernels
        "dead_units": (600, 350),  # its 5 activation layers by 2 epochs
    }
    for name in FIGURES:
        width, height = png_size(figured_run / "figures" / f"{name}.png")
        if name in expected:
            assert (width, height) == expected[name], name
        else:
            assert width >= 400 and height >= 400
    assert not list(figured_run.rglob(".*.tmp"))  # nothing half-written left behind


def test_model_summary_lists_each_layer_with_the_keras_hyperparameter_slides_counts(figured_run):
    text = (figured_run / "model_summary.txt").read_text()
    rows = text.splitlines()[2:-2]  # between the rules under the header and above the total
    counts = [int(row.split()[-2].replace(",", "")) for row in rows]
    metrics = json.loads((figured_run / "metrics.json").read_text())
    assert sum(counts) == metrics["params"] == 1_251_242
    conv = next(row for row in rows if row.startswith("features.0.0 (Conv2d)"))
    # output shape, weights: the Keras hyper-parameter slides' table
    assert "(32, 32, 32)" in conv and " 896 " in conv
    dense = next(row for row in rows if "(Linear)" in row and "(512,)" in row)
    assert dense.split()[-1] == f"{100 * 1_180_160 / 1_251_242:.2f}%"


def test_confusion_matrix_counts_the_tested_checkpoints_predictions(figured_run):
    metrics = json.loads((figured_run / "metrics.json").read_text())
    rows = list(csv.reader((figured_run / "confusion_matrix.csv").open()))
    assert rows[0][1:4] == ["airplane", "automobile", "bird"]  # the data set's class names
    counts = torch.tensor([[int(v) for v in row[1:]] for row in rows[1:]])
    assert counts.sum() == 100
    assert counts.trace().item() / 100 == pytest.approx(metrics["test_acc"])
    report = (figured_run / "test_classes.md").read_text()
    assert report == class_report(counts, rows[0][1:], 10)


def test_class_report_names_the_most_confused_pairs_first():
    counts = torch.tensor([[5, 3, 0], [1, 8, 1], [0, 4, 6]])
    report = class_report(counts, ["cat", "dog", "fox"], pairs=2)
    assert "| cat | 8 | 5 | 62.50% |" in report
    pairs = report.split("Most-confused pairs:")[1]
    assert pairs.index("| fox | dog | 4 | 40.00% |") < pairs.index("| cat | dog | 3 | 37.50% |")
    assert "| dog | cat |" not in pairs  # only the top 2


def test_figures_and_class_plots_reach_wandb(figured_run):
    (path,) = figured_run.glob("wandb/offline-run-*/run-*.wandb")
    logged = {}
    for row in wandb_records.summary(path)["history"]:
        logged |= row
    for name in FIGURES:
        assert logged[f"figures/{name}/_type"] == "images/separated"
        assert logged[f"figures/{name}/format"] == "png"
    assert logged["weights/features.0.0/_type"] == "histogram"
    assert logged["gradients/classifier.3/_type"] == "histogram"
    # W&B's own plots: the confusion matrix as its (true, predicted, count) table, one row per
    # pair of the 10 classes, and accuracy by class, one row each
    assert logged["test/confusion_matrix_table/nrows"] == 100
    assert logged["test/class_accuracy_table/nrows"] == 10


def test_augmentation_examples_leave_the_run_as_it_was(tmp_path):
    """Drawing the examples (with mixup, which works in place) changes neither the images nor
    the random draws the training sees (grey images here: the figures' one-channel path)."""
    tiny = [
        "data=fake",
        "data.in_channels=1",
        "data.image_size=16",
        "data.dataset.train_size=64",
        "data.dataset.test_size=16",
        "data.batch_size=16",
        "model=cnn_shallow",
        "model.pool=2",
        "augment=cutout",
        "augment.mixup_alpha=0.4",
        "trainer.max_epochs=1",
        "~callbacks.progress_bar",
    ]
    results = []
    for name, extra in (("with", []), ("without", ["~callbacks.augment_examples"])):
        run(compose_cfg(tmp_path, [*tiny, *extra], output_dir=tmp_path / name))
        results.append(json.loads((tmp_path / name / "metrics.json").read_text())["test_loss"])
    assert results[0] == results[1]
    assert png_size(tmp_path / "with" / "figures" / "augment_examples.png") == (1280, 680)
    assert not (tmp_path / "without" / "figures" / "augment_examples.png").exists()


def test_grad_cam_of_the_trained_model_lights_up_the_band_that_holds_the_class(figured_run):
    """The generated images carry their class as a bright band of rows: where the model looks
    for a right answer. The maps are image-sized, non-negative and not constant."""
    model = load_classifier(figured_run / "checkpoints" / "best.ckpt")
    test = cifar10(figured_run.parent / "data", verify=False, download=False)
    x, y = test.test_images[:32], test.test_labels[:32]
    names, cams, predicted = grad_cam(model, model.net, x)
    sizes = [name.rsplit(", ", 1)[1].rstrip(")") for name in names]
    assert sizes == ["32x32", "30x30", "15x15", "13x13", "6x6"]  # every resolution, in order
    assert cams.shape == (32, 5, 32, 32) and cams.min() >= 0
    assert (cams.flatten(2).std(2) > 0).float().mean() > 0.9
    assert torch.equal(predicted, model(x).argmax(1))
    ratios = []
    for i in (predicted == y).nonzero().flatten().tolist():
        band = torch.zeros(32, dtype=torch.bool)
        band[3 * y[i] : 3 * y[i] + 3] = True  # learnable_images: 32 // 10 rows per class
        for cam in cams[i]:
            ratios.append(cam[band].mean() / cam[~band].mean().clamp(min=1e-12))
    assert len(ratios) >= 5 * 5 and torch.stack(ratios).median() > 2


def test_grad_cam_is_the_gradient_weighted_sum_of_the_stages_activations(figured_run):
    """The last stage's map computed by hand: ReLU(sum_k mean(dy_c/dA_k) A_k), upsampled."""
    model = load_classifier(figured_run / "checkpoints" / "best.ckpt")
    x = cifar10(figured_run.parent / "data", verify=False, download=False).test_images[:4]
    _, cams, predicted = grad_cam(model, model.net, x)
    kept = {}
    hook = model.net.features[6].register_forward_hook(lambda m, i, o: kept.update(a=o))
    score = model(x).gather(1, predicted[:, None]).sum()
    hook.remove()
    (grad,) = torch.autograd.grad(score, kept["a"])
    weights = grad.mean((2, 3), keepdim=True)
    cam = F.relu((weights * kept["a"]).sum(1, keepdim=True))
    expected = F.interpolate(cam, size=(32, 32), mode="bilinear")[:, 0]
    torch.testing.assert_close(cams[:, -1], expected.detach())


@pytest.mark.parametrize("model", registry.names("model"))
def test_grad_cam_finds_the_stages_of_every_model(model):
    net = {"model": {"name": model}, "activation": {"name": "relu"}, "norm": {"name": "bn"}}
    data = {"in_channels": 3, "image_size": 32, "num_classes": 10}
    module = Classifier(**net, init={"name": "auto"}, optimizer={}, data=data).train()
    inplace = [m.inplace for m in module.modules() if isinstance(m, nn.ReLU)]
    names, cams, _ = grad_cam(module, module.net, torch.rand(2, 3, 32, 32))
    sides = [int(name.rsplit(", ", 1)[1].split("x")[0]) for name in names]
    assert len(sides) >= 2 and sides == sorted(sides, reverse=True) and sides[0] == 32
    assert cams.shape == (2, len(names), 32, 32) and cams.min() >= 0
    # in-place ReLUs are switched off for the maps, then back on; the mode is restored
    assert [m.inplace for m in module.modules() if isinstance(m, nn.ReLU)] == inplace
    assert any(inplace) and module.training


def test_dead_units_are_the_units_never_above_zero():
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 1))
    shared = net[1]
    net.append(shared)  # the same ReLU again: a layer of its own
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.copy_(torch.tensor([-2.0, 0.0, -0.5]))  # inputs in [0, 1]: 0 and 2 die
        net[2].weight.fill_(0.0)
        net[2].bias.copy_(torch.tensor([1.0, -1.0]))
    rows = dead_units(net, net, torch.rand(64, 1, 4, 4) * 0.4)
    assert [(r["layer"], r["units"], r["dead"]) for r in rows] == [("1", 3, 2), ("1#2", 2, 1)]
    assert rows[0]["share"] == pytest.approx(2 / 3)


def test_dead_units_and_weight_histograms_are_recorded_every_epoch(figured_run):
    rows = list(csv.DictReader((figured_run / "dead_units.csv").open()))
    model = load_classifier(figured_run / "checkpoints" / "last.ckpt")
    layers = [name for name, m in model.net.named_modules() if is_activation(m)]
    assert [(int(r["epoch"]), r["layer"]) for r in rows] == [(e, n) for e in (0, 1) for n in layers]
    logged = epoch_series(figured_run)["dead_units/share"]
    for epoch in (0, 1):
        mine = [r for r in rows if int(r["epoch"]) == epoch]
        share = sum(int(r["dead"]) for r in mine) / sum(int(r["units"]) for r in mine)
        assert logged[epoch] == pytest.approx(share)
    # TensorBoard: each kernel's histogram at each epoch; the last one is last.ckpt's weights
    board = EventAccumulator(str(figured_run / "tensorboard"), {"histograms": 0}).Reload()
    tags = board.Tags()["histograms"]
    kernels = [n.removesuffix(".weight") for n, p in model.net.named_parameters() if p.ndim > 1]
    assert {f"weights/{k}" for k in kernels} | {f"gradients/{k}" for k in kernels} == set(tags)
    first = board.Histograms("weights/features.0.0")
    assert [h.step for h in first] == [0, 1]
    weight = model.net.features[0][0].weight
    assert first[-1].histogram_value.num == weight.numel()
    assert first[-1].histogram_value.max == pytest.approx(weight.max().item())
