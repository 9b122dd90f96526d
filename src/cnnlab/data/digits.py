"""SVHN and MNIST through torchvision's readers (SVHN's .mat files need scipy); torchvision
checks the md5 sums of what it downloads, and of SVHN's files on every load unless ``verify``."""

import torch
from torchvision import datasets

from cnnlab.data import fetch
from cnnlab.data.arrays import ImageArrays
from cnnlab.errors import ConfigError, first_line
from cnnlab.files import held
from cnnlab.registry import register


@register("data", "svhn")
def svhn(root: str = "data/svhn", verify: bool = True, download: bool = True) -> ImageArrays:
    """SVHN's 73,257 training and 26,032 test 32x32 colour digits (labels 0-9)."""
    spec = datasets.SVHN
    if not verify:  # an md5 of None makes torchvision's check test existence only
        lists = {split: [url, name, None] for split, (url, name, _) in spec.split_list.items()}
        spec = type("SVHN", (spec,), {"split_list": lists})
    path = fetch.folder(root)
    try:
        with held(path, ".svhn.lock", wait=True):  # one job downloads, the others wait
            train, test = (spec(str(path), split=s, download=download) for s in ("train", "test"))
    except (RuntimeError, OSError) as err:  # not there and no download, or a failed one
        raise ConfigError(
            f"SVHN not found or damaged in {path} ({first_line(err)}): put "
            "train_32x32.mat and test_32x32.mat there, or set data.dataset.download=true"
        ) from None
    return ImageArrays(
        *_arrays(train.data, train.labels),
        *_arrays(test.data, test.labels),
        classes=[str(digit) for digit in range(10)],  # label 0 is the digit 0
    )


@register("data", "mnist")
def mnist(root: str = "data", download: bool = True) -> ImageArrays:
    """MNIST's 60,000 training and 10,000 test 28x28 grey digits, from ``root/MNIST/raw``."""
    path = fetch.folder(root)
    try:
        with held(path, ".mnist.lock", wait=True):
            train, test = (
                datasets.MNIST(str(path), train=split, download=download) for split in (True, False)
            )
    except (RuntimeError, OSError) as err:
        raise ConfigError(
            f"MNIST not found in {path / 'MNIST' / 'raw'} ({first_line(err)}): put its "
            "four idx files there (.gz or unpacked), or set data.dataset.download=true"
        ) from None
    return ImageArrays(
        *_arrays(train.data.unsqueeze(1), train.targets),
        *_arrays(test.data.unsqueeze(1), test.targets),
        classes=list(datasets.MNIST.classes),
    )


def _arrays(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(images).contiguous(), torch.as_tensor(labels, dtype=torch.long)
