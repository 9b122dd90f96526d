"""Fashion-MNIST from its four idx ``.gz`` files, as Debian's dataset-fashion-mnist has them."""

import gzip
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import FashionMNIST

from cnnlab.data.arrays import ImageArrays
from cnnlab.errors import ConfigError
from cnnlab.registry import register

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: Path) -> np.ndarray:
    """One idx file: a big-endian header (magic, then one uint32 per dimension) and uint8 data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # not gzip, or cut short
        raise ConfigError(f"{path} is damaged ({err}); fetch it again") from None
    ndim = raw[3]
    if raw[:3] != b"\x00\x00\x08":  # 0x08 = unsigned byte data
        raise ConfigError(f"{path} is not an idx file of unsigned bytes")
    shape = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ConfigError(
            f"{path} is truncated: header says {tuple(shape)}, found {data.size} bytes"
        )
    return data.reshape(tuple(int(n) for n in shape))


@register("data", "fashion_mnist")
def fashion_mnist(root: str = "/usr/share/datasets/fashion-mnist") -> ImageArrays:
    """60,000 training and 10,000 test 28x28 grey images in 10 classes."""
    missing = [name for name in FILES.values() if not (Path(root) / name).is_file()]
    if missing:
        raise ConfigError(
            f"Fashion-MNIST files missing in {root}: {', '.join(missing)}; on Debian run "
            "'apt-get install dataset-fashion-mnist' or set data.dataset.root to their folder"
        )
    arrays = {
        key: torch.from_numpy(read_idx(Path(root) / name).copy()) for key, name in FILES.items()
    }
    for key in ("train_images", "test_images"):
        arrays[key] = arrays[key].unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
    for key in ("train_labels", "test_labels"):
        arrays[key] = arrays[key].long()
    return ImageArrays(**arrays, classes=list(FashionMNIST.classes))
