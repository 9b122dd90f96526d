"""data=image_folder: a user's own class folders of image files, read as predict.py reads them."""

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import registry
from cnnlab.config.settings import settings
from cnnlab.data import image_folder
from cnnlab.errors import ConfigError
from cnnlab.inference.predict import load_classifier, read_image
from cnnlab.run.assemble import build_datamodule
from cnnlab.run.train import run

from conftest import FAST

CLASSES = ["ant", "moth", "zebra"]  # sorted: the folders are written in another order
SIZES = [(20, 14), (14, 20), (17, 17)]  # (width, height): resized and cropped to 8x8


def write_classes(folder: Path, per_class: int = 6, seed: int = 0) -> dict[str, list[Path]]:
    """``folder/CLASS/*.png`` of random colour images; the files of each class."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in ("zebra", "ant", "moth"):
        (folder / name).mkdir(parents=True)
        written[name] = []
        for i in range(per_class):
            width, height = SIZES[i % len(SIZES)]
            path = folder / name / f"{i}.png"
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path)
            written[name].append(path)
    return written


def spoil(folder: Path) -> list[Path]:
    """A PNG cut in half and a text file among the images: the two files to be skipped."""
    broken, notes = folder / "moth" / "broken.png", folder / "ant" / "notes.txt"
    whole = (folder / "moth" / "0.png").read_bytes()
    broken.write_bytes(whole[: len(whole) // 2])
    notes.write_text("taken on the 3rd\n")
    return [broken, notes]


def load(root: Path | None, **options):
    options = {"num_classes": 3, "image_size": 8, **options}
    return registry.create("data", "image_folder", root=root and str(root), **options)


def as_read(paths: list[Path], channels: int = 3) -> Counter:
    """The images of ``paths`` as predict.py reads them, as a multiset of their bytes."""
    return Counter(read_image(p, channels, 8).numpy().tobytes() for p in paths)


def pictures(images: torch.Tensor, labels: torch.Tensor, label: int) -> Counter:
    return Counter(image.numpy().tobytes() for image in images[labels == label])


@pytest.mark.parametrize("channels", [1, 3])
def test_one_folder_is_read_once_as_predict_reads_files_and_a_stratified_test_set_split_off(
    tmp_path, channels
):
    written = write_classes(tmp_path / "pics")
    arrays = load(tmp_path / "pics", in_channels=channels, test_split=1 / 3)
    assert arrays.classes == CLASSES
    assert arrays.train_images.shape == (12, channels, 8, 8)
    assert arrays.test_images.shape == (6, channels, 8, 8)
    assert arrays.train_images.dtype == torch.uint8 and arrays.test_labels.dtype == torch.long
    assert arrays.val_images is None  # the data module holds out data.val_split of the rest
    assert arrays.test_labels.bincount().tolist() == [2, 2, 2]  # a third of every class
    for label, name in enumerate(CLASSES):
        train = pictures(arrays.train_images, arrays.train_labels, label)
        test = pictures(arrays.test_images, arrays.test_labels, label)
        assert not train & test  # disjoint, and together each file of the class, pixel for pixel
        assert train + test == as_read(written[name], channels)


def test_the_test_split_is_seeded_and_the_images_come_in_a_seeded_order(tmp_path):
    write_classes(tmp_path / "pics")
    first, again = load(tmp_path / "pics"), load(tmp_path / "pics")
    other = load(tmp_path / "pics", split_seed=1)
    assert torch.equal(first.test_images, again.test_images)
    assert torch.equal(first.train_labels, again.train_labels)
    assert pictures(first.test_images, first.test_labels, 0) != pictures(
        other.test_images, other.test_labels, 0
    )
    # not class by class: data.train_subset=N keeps every class
    assert len(set(first.train_labels[:6].tolist())) > 1


def test_unreadable_files_are_named_in_one_warning_each_and_skipped(tmp_path, caplog):
    write_classes(tmp_path / "pics")
    broken, notes = spoil(tmp_path / "pics")
    with caplog.at_level(logging.WARNING, logger="cnnlab.data.image_folder"):
        arrays = load(tmp_path / "pics", test_split=1 / 3)
    assert len(arrays.train_labels) + len(arrays.test_labels) == 18
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all(r.exc_info is None for r in caplog.records)
    assert lines[0].startswith(f"skipped {notes}: ") and "\n" not in lines[0]
    assert lines[1] == f"skipped {broken}: image file is truncated"


def test_train_val_and_test_folders_are_used_as_they_are(tmp_path):
    root = tmp_path / "pics"
    train = write_classes(root / "train", per_class=4, seed=0)
    val = write_classes(root / "val", per_class=1, seed=1)
    test = write_classes(root / "test", per_class=2, seed=2)
    arrays = load(root, test_split=0.5)  # unused: there is a test/ folder
    assert (len(arrays.train_labels), len(arrays.val_labels), len(arrays.test_labels)) == (12, 3, 6)
    for label, name in enumerate(CLASSES):
        for split, files in (("train", train), ("val", val), ("test", test)):
            images, labels = getattr(arrays, f"{split}_images"), getattr(arrays, f"{split}_labels")
            assert pictures(images, labels, label) == as_read(files[name])


def test_without_a_test_folder_the_test_set_is_split_off_train(tmp_path):
    written = write_classes(tmp_path / "pics" / "train")
    arrays = load(tmp_path / "pics", test_split=0.5)
    assert arrays.test_labels.bincount().tolist() == [3, 3, 3]
    everything = sum((as_read(files) for files in written.values()), Counter())
    train = pictures(arrays.train_images, torch.zeros_like(arrays.train_labels), 0)
    test = pictures(arrays.test_images, torch.zeros_like(arrays.test_labels), 0)
    assert not train & test and train + test == everything
    with pytest.raises(ConfigError, match=r"test_split=0 but .* has no test/ folder"):
        load(tmp_path / "pics", test_split=0.0)


def _unreadable_class(root: Path) -> dict:
    write_classes(root)
    for path in (root / "moth").iterdir():
        path.write_text("not a picture")
    return {}


def _empty_class(root: Path) -> dict:
    write_classes(root)
    (root / "bee").mkdir()
    return {"num_classes": 4}


def _val_of_other_classes(root: Path) -> dict:
    write_classes(root / "train")
    write_classes(root / "val", per_class=1)
    (root / "val" / "ant").rename(root / "val" / "bee")
    return {}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: {"root": None}, r"needs data\.dataset\.root=DIR, laid out as DIR/CLASS/"),
        (
            lambda root: {"in_channels": 2},
            r"^data\.in_channels=2: .* set data\.in_channels=1 or 3$",
        ),
        (lambda root: {}, r"data\.dataset\.root=.*: no such folder; expected DIR/CLASS/IMAGE"),
        (
            lambda root: root.write_bytes(b"") or {},
            r"data\.dataset\.root=.*pics: a file, not a folder; expected DIR/CLASS/IMAGE",
        ),
        (  # not the current folder, which Path("") is
            lambda root: {"root": ""},
            r"needs data\.dataset\.root=DIR, laid out as DIR/CLASS/",
        ),
        (lambda root: root.mkdir() or {}, r"has no class folders; expected DIR/CLASS/IMAGE"),
        (
            lambda root: write_classes(root) and {"num_classes": 5},
            r"has 3 class folders \(ant, moth, zebra\) but data\.num_classes=5; "
            r"set data\.num_classes=3$",
        ),
        (  # why: the skipped files' warnings would only come after the arrays were read
            _unreadable_class,
            r"pics/moth has no readable image: all 6 of its files were skipped "
            r"\(.*pics/moth/0\.png: cannot identify image file .*\)$",
        ),
        (_empty_class, r"pics/bee has no readable image: it holds no file$"),
        (_val_of_other_classes, r"val has bee; lacks ant: val/ needs the class folders of train/"),
        (
            lambda root: write_classes(root / "test") and {},
            r"has val/ or test/ but no train/",
        ),
    ],
    ids=[
        "no-root",
        "channels",
        "missing",
        "a-file",
        "empty-root",
        "empty",
        "class-count",
        "unreadable",
        "empty-class",
        "val-classes",
        "no-train",
    ],
)
def test_a_folder_that_cannot_be_used_is_refused_in_one_line(tmp_path, make, message):
    root = tmp_path / "pics"
    options = {"root": root, **make(root)}
    with pytest.raises(ConfigError, match=message) as err:
        load(**options)
    assert "\n" not in str(err.value)


def test_a_second_load_reads_the_cache_and_a_changed_folder_is_read_again(tmp_path, monkeypatch):
    write_classes(tmp_path / "pics")
    spoil(tmp_path / "pics")
    cache = tmp_path / "cache"
    first = load(tmp_path / "pics", cache_dir=str(cache))
    assert len(list(cache.glob("image_folder-*.pt"))) == 1
    reads = []
    monkeypatch.setattr(
        image_folder,
        "read_image",
        lambda path, *args: reads.append(path) or read_image(path, *args),
    )
    again = load(tmp_path / "pics", cache_dir=str(cache))
    assert reads == []  # no file decoded: all from the cache
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, field), getattr(again, field))
    assert again.classes == CLASSES
    load(tmp_path / "pics", cache_dir=str(cache), image_size=6)  # another size: read anew
    assert len(reads) == 20
    ant = tmp_path / "pics" / "ant"
    (ant / "6.png").write_bytes((ant / "0.png").read_bytes())  # an image added: read anew
    grown = load(tmp_path / "pics", cache_dir=str(cache))
    assert len(grown.train_labels) + len(grown.test_labels) == 19
    assert len(reads) == 41


def test_without_a_root_the_run_stops_saying_to_set_one(make_cfg):
    with pytest.raises(ConfigError, match=r"data=image_folder needs data\.dataset\.root=DIR"):
        build_datamodule(make_cfg(["data=image_folder"])).setup()


def test_which_folder_is_a_setting_of_the_run_but_where_its_cache_is_not(make_cfg):
    where = ["data.dataset.root=/photos", "data.dataset.cache_dir=/scratch/cache"]
    flat = settings(make_cfg(["data=image_folder", *where]))
    assert flat["data.dataset.root"] == "/photos" and "data.dataset.cache_dir" not in flat
    assert flat["data.dataset.test_split"] == 0.2  # what is read, and how, is


def test_a_run_trains_on_the_folders_and_the_next_run_reads_both_caches(
    make_cfg, tmp_path, monkeypatch
):
    root = tmp_path / "pics"
    write_classes(root / "train", per_class=4)
    write_classes(root / "val", per_class=1, seed=1)
    write_classes(root / "test", per_class=2, seed=2)
    data = ["data=image_folder", f"data.dataset.root={root}", "data.num_classes=3"]
    quick = ["data.image_size=16", "data.batch_size=4", "model=base_cnn", "trainer.max_epochs=1"]
    cfg = make_cfg([*data, *quick, *FAST])
    run(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["best_val_acc"] is not None
    assert load_classifier(metrics["checkpoint"]).class_names == CLASSES
    # The next run: not one file decoded, no statistic computed; val/ validates.
    monkeypatch.setattr(image_folder, "read_image", pytest.fail)
    monkeypatch.setattr("cnnlab.data.preprocess.channel_stats", pytest.fail)
    dm = build_datamodule(cfg)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (12, 3, 6)
    assert len(list(Path(cfg.data.cache_dir).glob("stats-image_folder-*.pt"))) == 1
