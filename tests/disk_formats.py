"""Tiny data sets written in the real on-disk formats, so tests read them with the users' code."""

import gzip
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def learnable_images(labels: np.ndarray, channels: int, side: int, seed: int) -> np.ndarray:
    """uint8 images (N, C, H, W) whose class is written in them: a bright band at a place set by
    the label, on noise. A linear model separates the classes; chance is 1 / classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, size=(len(labels), channels, side, side), dtype=np.uint8)
    rows = side // 10
    for i, label in enumerate(labels):
        images[i, :, label * rows : (label + 1) * rows, :] = 255
    return images


def write_cifar10(root: Path, per_batch: int = 20, test: int = 50, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with five training batches, a test batch and the meta file."""
    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate([*CIFAR_TRAIN, "test_batch"]):
        n = test if name == "test_batch" else per_batch
        labels = rng.integers(0, 10, size=n)
        images = learnable_images(labels, 3, 32, seed + i)
        batch = {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": images.reshape(n, 3072),
            "filenames": [f"{name}_{j}.png" for j in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    meta = {
        "label_names": [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ],
        "num_cases_per_batch": per_batch,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def write_cifar10_archive(root: Path, **kwargs) -> Path:
    """``root/cifar-10-python.tar.gz`` as the official archive is laid out, and nothing else."""
    build = root / "build"
    folder = write_cifar10(build, **kwargs)
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=CIFAR_FOLDER)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    build.rmdir()
    return archive


def write_cifar100(root: Path, train: int = 60, test: int = 30, seed: int = 0) -> Path:
    """``root/cifar-100-python``: the train and test pickles (fine and coarse labels), meta."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", train), ("test", test)):
        fine = rng.integers(0, 100, size=n)
        batch = {
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "fine_labels": fine.tolist(),
            "coarse_labels": (fine // 5).tolist(),
            "filenames": [f"{name}_{j}.png" for j in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    meta = {
        "fine_label_names": [f"class_{i}" for i in range(100)],
        "coarse_label_names": [f"super_{i}" for i in range(20)],
    }
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def write_svhn(root: Path, train: int = 60, test: int = 30, seed: int = 0) -> Path:
    """``train_32x32.mat`` and ``test_32x32.mat`` as SVHN has them: X (32, 32, 3, N), y (N, 1)
    with the digit 0 labelled 10."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        digits = rng.integers(0, 10, size=n)
        images = learnable_images(digits, 3, 32, seed)  # (N, C, H, W)
        y = np.where(digits == 0, 10, digits).reshape(n, 1).astype(np.uint8)
        savemat(root / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": y})
    return root


def write_mnist(root: Path, train: int = 60, test: int = 30, seed: int = 0) -> Path:
    """``root/MNIST/raw``: the four idx files, unpacked, as torchvision leaves them."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        _write_idx(raw / f"{split}-images-idx3-ubyte", learnable_images(labels, 1, 28, seed)[:, 0])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root: Path, train: int = 200, test: int = 50, seed: int = 0) -> Path:
    """The four idx ``.gz`` files of Fashion-MNIST, with learnable 28x28 images."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = learnable_images(labels, 1, 28, seed)[:, 0]
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


def write_image_folder(root: Path, train: int = 8, test: int = 3, seed: int = 0) -> Path:
    """``root/train/class_K/*.png`` and ``root/test/class_K/*.png``: 10 classes of learnable
    colour images 40 high and 48 wide, so that reading them resizes and crops (the sides)."""
    from PIL import Image

    for offset, (split, n) in enumerate((("train", train), ("test", test))):
        labels = np.repeat(np.arange(10), n)
        images = learnable_images(labels, 3, 40, seed + offset)
        images = np.concatenate([images, images[..., :8]], axis=3)  # (N, 3, 40, 48)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i}.png")
    return root
