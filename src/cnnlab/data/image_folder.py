"""Your own images, one folder per class, each read as predict.py reads one; the arrays are
cached, so the next run with the same files and settings reads one file instead of thousands."""

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from cnnlab.data.arrays import ImageArrays
from cnnlab.data.image_files import image_files, read_image
from cnnlab.data.split import stratified_split
from cnnlab.data.stats import cached
from cnnlab.errors import ConfigError
from cnnlab.options import Count, Fraction, Natural
from cnnlab.registry import register

log = logging.getLogger(__name__)
LAYOUT = "DIR/CLASS/IMAGE, or DIR/train/CLASS/IMAGE with optional DIR/val/ and DIR/test/"
# Part of the cache key: a change to how files become arrays must not read an old cache.
READER_VERSION = 1

Files = list[tuple[Path, int]]  # each image file and its label


@register("data", "image_folder")
def image_folder(
    root: str | None = None,
    num_classes: Count = 10,
    in_channels: int = 3,
    image_size: Count = 32,
    test_split: Fraction = 0.2,
    split_seed: Natural = 0,
    cache_dir: str | None = None,
) -> ImageArrays:
    """The images under ``root`` (as ``LAYOUT``), labelled by their sorted class folders, in a
    seeded random order so that ``data.train_subset`` keeps every class."""
    if in_channels not in (1, 3):  # here, not in the annotation: to name the key users set
        raise ConfigError(
            f"data.in_channels={in_channels}: image_folder reads images as grey or RGB; "
            "set data.in_channels=1 or 3"
        )
    folders = _layout(root, test_split)
    classes = _classes(folders)
    if len(classes) != num_classes:
        raise ConfigError(
            f"{folders['train']} has {len(classes)} class folders ({_listed(classes)}) but "
            f"data.num_classes={num_classes}; set data.num_classes={len(classes)}"
        )
    files = {split: _labelled(folder, classes) for split, folder in folders.items()}
    split = test_split if "test" not in folders else None  # (unused beside a test/ folder)
    key = _fingerprint(folders, files, in_channels, image_size, split, split_seed)

    def read() -> dict:
        log.info(f"image_folder: reading {sum(map(len, files.values()))} image files in {root}")
        return _arrays(folders, files, classes, in_channels, image_size, test_split, split_seed)

    arrays = cached(cache_dir, f"image_folder-{key}", read)
    for line in arrays.pop("skipped"):  # each time, also from the cache: still unread
        log.warning(f"skipped {line}")
    return ImageArrays(**arrays, classes=classes)


def _layout(root: str | None, test_split: float) -> dict[str, Path]:
    """The folders of each split that has its own: ``train`` always."""
    if not root:  # ('': Path would take it for the current folder)
        raise ConfigError(f"data=image_folder needs data.dataset.root=DIR, laid out as {LAYOUT}")
    path = Path(root).expanduser()
    if not path.is_dir():
        what = "a file, not a folder" if path.exists() else "no such folder"
        raise ConfigError(f"data.dataset.root={root}: {what}; expected {LAYOUT}")
    if not (path / "train").is_dir():
        if (path / "val").is_dir() or (path / "test").is_dir():  # not classes: a split's
            raise ConfigError(f"{path} has val/ or test/ but no train/; expected {LAYOUT}")
        folders = {"train": path}
    else:
        folders = {s: path / s for s in ("train", "val", "test") if (path / s).is_dir()}
    if "test" not in folders and test_split == 0:  # every run ends with a test
        raise ConfigError(
            f"data.dataset.test_split=0 but {path} has no test/ folder: set a fraction "
            "(0.2) to test on, or put the test images in test/CLASS/"
        )
    return folders


def _classes(folders: dict[str, Path]) -> list[str]:
    """The class folders' names, sorted; the same in every split."""
    classes = _subfolders(folders["train"])
    if not classes:
        raise ConfigError(f"{folders['train']} has no class folders; expected {LAYOUT}")
    for split, folder in folders.items():
        names = _subfolders(folder)
        if names != classes:
            extra, missing = sorted(set(names) - set(classes)), sorted(set(classes) - set(names))
            what = "; ".join(
                f"{words} {_listed(group)}"
                for words, group in (("has", extra), ("lacks", missing))
                if group
            )
            raise ConfigError(
                f"{folder} {what}: {split}/ needs the class folders of train/ ({_listed(classes)})"
            )
    return classes


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _listed(names: list[str], most: int = 6) -> str:
    """Names for a one-line message: the first few, and how many more."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _labelled(folder: Path, classes: list[str]) -> Files:
    return [
        (path, label) for label, name in enumerate(classes) for path in image_files(folder / name)
    ]


def _fingerprint(folders: dict[str, Path], files: dict[str, Files], *options) -> str:
    """A short hash of the file list (relative paths, sizes, modification times) and the
    options that change the arrays: an added, removed or edited file reads the folder anew."""
    digest = hashlib.sha1(repr((READER_VERSION, *options)).encode())
    for split, listed in files.items():
        for path, label in listed:
            stat = path.stat()
            where = str(path.relative_to(folders[split]))
            digest.update(repr((split, where, label, stat.st_size, stat.st_mtime_ns)).encode())
    return digest.hexdigest()[:16]


def _arrays(
    folders: dict[str, Path],
    files: dict[str, Files],
    classes: list[str],
    channels: int,
    size: int,
    test_split: float,
    seed: int,
) -> dict:
    """Each split's images and labels, in a seeded order, and the skipped files ("PATH: reason")."""
    read, skipped = {}, []
    for split, listed in files.items():
        images, labels, unread = _read(listed, channels, size)
        skipped += unread
        counts = labels.bincount(minlength=len(classes))
        if (counts == 0).any():
            label = int((counts == 0).nonzero()[0])
            tried = sum(1 for _, each in listed if each == label)
            where = folders[split] / classes[label]
            # the skipped files' warnings come after the arrays are read: say why here
            first = next((line for line in unread if line.startswith(f"{where}/")), "")
            why = (
                f"all {tried} of its files were skipped ({first})" if tried else "it holds no file"
            )
            raise ConfigError(f"{where} has no readable image: {why}")
        read[split] = images, labels
    if "test" not in read:
        images, labels = read["train"]
        rest, test = stratified_split(labels, test_split, seed)
        if not len(test):
            raise ConfigError(
                f"data.dataset.test_split={test_split} leaves no test image "
                f"({len(labels)} images); raise it"
            )
        read["train"], read["test"] = (images[rest], labels[rest]), (images[test], labels[test])
    gen = torch.Generator().manual_seed(seed)
    arrays: dict = {"skipped": skipped}
    for split, (images, labels) in read.items():
        order = torch.randperm(len(labels), generator=gen)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[order], labels[order]
    return arrays


def _read(files: Files, channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The readable files' images (N, C, size, size) and labels, and the others' reasons.
    Pillow and torch let go of the GIL while they decode and resize: threads share the work."""

    def attempt(path: Path) -> torch.Tensor | str:
        try:
            return read_image(path, channels, size)
        except ValueError as err:
            return str(err)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(attempt, [path for path, _ in files]))
    images, labels, skipped = [], [], []
    for (path, label), result in zip(files, results, strict=True):
        if isinstance(result, str):
            skipped.append(f"{path}: {result}")
        else:
            images.append(result)
            labels.append(label)
    stacked = (
        torch.stack(images) if images else torch.empty(0, channels, size, size, dtype=torch.uint8)
    )
    return stacked, torch.tensor(labels, dtype=torch.long), skipped
