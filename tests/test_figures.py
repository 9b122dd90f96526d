"""The default figures of a run: model summary, confusion matrix, predictions, curves, filters,
augmentation examples; written into the run directory and logged to W&B."""

import csv
import json
from pathlib import Path

import matplotlib.image
import pytest
import torch

from cnnlab.callbacks.confusion import class_report
from cnnlab.run import run

import wandb_records
from conftest import compose_cfg
from disk_formats import write_cifar10

FIGURES = ("confusion_matrix", "predictions", "curves", "filters", "augment_examples")


@pytest.fixture(scope="module")
def figured_run(tmp_path_factory) -> Path:
    """One small base CNN run on generated CIFAR-10 with the default callbacks, logged to an
    offline W&B run."""
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
            "logger=wandb",
            "~callbacks.progress_bar",
        ]
        run(compose_cfg(root, overrides))
    return root / "run"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG that matplotlib can read back."""
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image.shape[1], image.shape[0]


def test_every_default_figure_is_a_readable_png_of_its_size(figured_run):
    expected = {  # matplotlib's figsize x 100 dpi
        "predictions": (960, 1160),
        "filters": (600, 600),
        "curves": (1500, 400),
        "augment_examples": (1280, 680),
    }
    for name in FIGURES:
        width, height = png_size(figured_run / "figures" / f"{name}.png")
        if name in expected:
            assert (width, height) == expected[name], name
        else:
            assert width >= 400 and height >= 400
    assert not list(figured_run.rglob(".*.tmp"))  # nothing half-written left behind


def test_model_summary_lists_each_layer_with_the_seed001_counts(figured_run):
    text = (figured_run / "model_summary.txt").read_text()
    rows = text.splitlines()[2:-2]  # between the rules under the header and above the total
    counts = [int(row.split()[-2].replace(",", "")) for row in rows]
    metrics = json.loads((figured_run / "metrics.json").read_text())
    assert sum(counts) == metrics["params"] == 1_251_242
    conv = next(row for row in rows if row.startswith("features.0.0 (Conv2d)"))
    assert "(32, 32, 32)" in conv and " 896 " in conv  # output shape, weights: seed 001's table
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
