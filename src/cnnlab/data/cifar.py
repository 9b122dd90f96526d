"""CIFAR-10 through torchvision's reader, with the download made optional and explained.

torchvision checks the official archive's md5 sums; ``verify=False`` skips that so that the same
reader can load the small archives the tests write in the official format.
"""

import os
import tarfile
import tempfile
import urllib.error
from pathlib import Path

import torch
from filelock import FileLock
from torchvision import datasets
from torchvision.datasets.utils import check_integrity, download_url

from cnnlab.data.arrays import ImageArrays
from cnnlab.errors import ConfigError
from cnnlab.files import atomic
from cnnlab.registry import register


class _CIFAR10(datasets.CIFAR10):
    def __init__(self, root: str, train: bool, verify: bool):
        if not verify:  # an md5 of None makes torchvision's check_integrity test existence only
            self.train_list = [(name, None) for name, _ in self.train_list]
            self.test_list = [(name, None) for name, _ in self.test_list]
            self.meta = {**self.meta, "md5": None}
        super().__init__(root, train=train, download=False)


def _fetch(root: Path, verify: bool, download: bool) -> None:
    """Make sure ``root/cifar-10-batches-py`` exists: unpack a local archive or download one.

    Parallel jobs share ``root``: one fetches while the others wait on a lock file. The download
    and the unpacking go to temporary names first, so a kill leaves no half of either.
    """
    spec = datasets.CIFAR10
    with FileLock(root / ".cifar-10.lock"):
        if (root / spec.base_folder).is_dir():
            return
        archive = root / spec.filename
        if not archive.is_file():
            if not download:
                raise _missing(root, "downloads are switched off (data.dataset.download=false)")
            with atomic(archive) as part:
                try:
                    download_url(spec.url, str(root), part.name, spec.tgz_md5 if verify else None)
                except (urllib.error.URLError, OSError, RuntimeError) as err:  # RuntimeError: md5
                    raise _missing(root, f"the download failed ({err})") from None
        if verify and not check_integrity(str(archive), spec.tgz_md5):
            archive.unlink()
            raise ConfigError(
                f"{archive} does not have the official md5 sum (a partial or damaged copy): "
                "removed it; run again to download it (or put a good copy there; "
                "data.dataset.verify=false accepts an archive you made yourself)"
            )
        with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as tmp:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp, filter="data")
            os.replace(Path(tmp) / spec.base_folder, root / spec.base_folder)


def _missing(root: Path, why: str) -> ConfigError:
    return ConfigError(
        f"CIFAR-10 not found and {why}: put cifar-10-python.tar.gz or the unpacked "
        f"cifar-10-batches-py/ in {root}/, or use data=fashion_mnist, which works offline"
    )


def _arrays(dataset: datasets.CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return images, torch.tensor(dataset.targets, dtype=torch.long)


@register("data", "cifar10")
def cifar10(root: str = "data", verify: bool = True, download: bool = True) -> ImageArrays:
    """The 50,000 training and 10,000 test images of CIFAR-10, as uint8 tensors."""
    root_path = Path(root)
    try:
        root_path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"data.dataset.root={root} cannot be used as a folder: {err}") from None
    _fetch(root_path, verify, download)
    try:
        train, test = (_CIFAR10(str(root_path), t, verify) for t in (True, False))
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        raise ConfigError(
            f"CIFAR-10 in {root_path / datasets.CIFAR10.base_folder} is incomplete or fails the "
            "md5 check; delete it to fetch it again (data.dataset.verify=false skips the check)"
        ) from None
    return ImageArrays(*_arrays(train), *_arrays(test))
