"""k-fold cross-validation: data.folds=K data.fold=i, the report pooling the folds, their
ensemble."""

import csv
import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnlab.config.job import check_choices
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.split import fold_of, fold_split
from cnnlab.errors import ConfigError
from cnnlab.inference.evaluate import evaluate
from cnnlab.results.report import write_report
from cnnlab.run.train import run

from conftest import CONF, FAST, compose_cfg

FAKE = {"name": "fake", "train_size": 103, "test_size": 20, "image_size": 8, "num_classes": 4}


def data_module(**options) -> ImageDataModule:
    options = {"split_seed": 3, **options}
    dm = ImageDataModule(dataset=FAKE, augment={}, num_classes=4, image_size=8, **options)
    dm.setup()
    return dm


def rows(images: torch.Tensor) -> list[bytes]:
    """Each image as bytes: 192 random bytes, so no two images of the fake set are equal."""
    return [image.numpy().tobytes() for image in images]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    folds=st.integers(2, 9),
    seed=st.integers(0, 2**31),
)
def test_folds_partition_the_images_and_split_each_class_evenly(counts, folds, seed):
    assume(sum(counts) > 0)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    assigned = fold_of(labels, folds, seed)
    assert torch.equal(fold_of(labels, folds, seed), assigned)  # the seed decides them
    sizes = torch.bincount(assigned, minlength=folds)
    assert len(sizes) == folds and sizes.max() - sizes.min() <= 1
    for cls in range(len(counts)):
        per_fold = torch.bincount(assigned[labels == cls], minlength=folds)
        assert per_fold.max() - per_fold.min() <= 1  # balanced within one image
    seen = torch.zeros(len(labels), dtype=torch.long)
    for fold in range(folds):
        train, val = fold_split(labels, folds, fold, seed)
        assert len(set(train.tolist()) & set(val.tolist())) == 0
        assert len(train) + len(val) == len(labels)
        seen[val] += 1
    assert bool((seen == 1).all())  # every image validates exactly once


def test_the_folds_validation_sets_together_are_the_training_split_and_never_the_test_set():
    folds = [data_module(folds=4, fold=i) for i in range(4)]
    everything = rows(folds[0].arrays.train_images)
    test = set(rows(folds[0].arrays.test_images))
    validated: list[bytes] = []
    for dm in folds:
        train, val = rows(dm.train_set.images), rows(dm.val_set.images)
        assert sorted(train + val) == sorted(everything)
        assert not test & set(train + val)
        assert torch.equal(dm.test_set.images, dm.arrays.test_images)  # the test set untouched
        assert dm.has_validation
        validated += val
    assert sorted(validated) == sorted(everything)
    assert sorted(rows(data_module(folds=4, fold=0, split_seed=4).val_set.images)) != sorted(
        rows(folds[0].val_set.images)
    )  # another split_seed deals other folds


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"folds": 5}, "data.folds and data.fold go together"),
        ({"fold": 1}, "data.folds and data.fold go together"),
        ({"folds": 3, "fold": 3}, "data.fold=3: data.folds=3 numbers them 0..2"),
        ({"folds": 3, "fold": 0, "val_on_test": True, "val_split": 0}, "cannot go with"),
        ({"folds": 200, "fold": 0}, "more than the 103 training images"),
    ],
)
def test_wrong_folds_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as refused:
        data_module(**options)
    assert "\n" not in str(refused.value)


def test_three_folds_are_one_row_of_the_report_and_one_ensemble(tmp_path):
    check_choices(["data.folds=3", "data.fold=range(3)"], CONF)  # what -m runs them with
    sweep = tmp_path / "sweep"
    for fold in range(3):
        job = sweep / str(fold)
        overrides = ["data=fake", "data.image_size=12", "data.dataset.train_size=60"]
        overrides += ["data.dataset.test_size=16", "data.batch_size=20", "data.folds=3"]
        overrides += [f"data.fold={fold}", "model=base_cnn", "model.hidden=8", *FAST]
        overrides += ["trainer.max_epochs=1"]
        run(compose_cfg(tmp_path, overrides, output_dir=job))
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(f"- data.fold={fold}\n")
    records = [json.loads((sweep / str(f) / "metrics.json").read_text()) for f in range(3)]
    assert [r["settings"]["data.fold"] for r in records] == [0, 1, 2]
    write_report([sweep], show=False)
    (row,) = csv.DictReader((sweep / "report.csv").open())
    assert int(row["best_val_acc_n"]) == 3
    accs = [r["best_val_acc"] for r in records]
    assert float(row["best_val_acc_mean"]) == pytest.approx(sum(accs) / 3)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        where = [f"paths.root_dir={tmp_path}", f"output_dir={tmp_path / 'eval'}"]
        result = evaluate(compose("eval", overrides=[*where, f"sweep={sweep}", "top_k=3"]))
    members = result["members"][:-1]  # the last row is the ensemble
    folds = sorted(w for m in members for w in m["member"].split() if w.startswith("data.fold="))
    assert folds == [f"data.fold={f}" for f in range(3)]
    tested = sorted(r["test_acc"] for r in records)
    assert sorted(m["acc"] for m in members) == pytest.approx(tested)
