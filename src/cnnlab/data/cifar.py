"""CIFAR-10 and CIFAR-100 through torchvision's readers, the download optional and explained."""

import os
import tarfile
import tempfile
import urllib.error
import zlib
from pathlib import Path

import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity, download_url

from cnnlab.data import fetch
from cnnlab.data.arrays import ImageArrays
from cnnlab.errors import ConfigError
from cnnlab.files import atomic, held
from cnnlab.registry import register

Spec = type[datasets.CIFAR10]  # torchvision's CIFAR10 or CIFAR100: files, url and md5 sums


def _open(spec: Spec, root: Path, train: bool, verify: bool) -> datasets.CIFAR10:
    if not verify:  # an md5 of None makes torchvision's check_integrity test existence only
        unchecked = {
            "train_list": [(name, None) for name, _ in spec.train_list],
            "test_list": [(name, None) for name, _ in spec.test_list],
            "meta": {**spec.meta, "md5": None},
        }
        spec = type(spec.__name__, (spec,), unchecked)
    return spec(str(root), train=train, download=False)


def _fetch(spec: Spec, root: Path, verify: bool, download: bool) -> None:
    """Unpack (first downloading) the archive into ``root``, one job at a time (a lock file), each
    step into a temporary name first, so that a kill leaves no half of either."""
    with held(root, f".{spec.base_folder}.lock", wait=True):
        if (root / spec.base_folder).is_dir():
            return
        archive = root / spec.filename
        if not archive.is_file():
            if not download:
                raise _missing(spec, root, "downloads are off (data.dataset.download=false)")
            with atomic(archive) as part:
                try:
                    download_url(spec.url, str(root), part.name, spec.tgz_md5 if verify else None)
                except (urllib.error.URLError, OSError, RuntimeError) as err:  # RuntimeError: md5
                    raise _missing(spec, root, f"the download failed ({err})") from None
        if verify and not check_integrity(str(archive), spec.tgz_md5):
            archive.unlink()
            raise ConfigError(
                f"{archive} does not have the official md5 sum (a partial or damaged copy): "
                "removed it; run again to download it (or put a good copy there; "
                "data.dataset.verify=false accepts an archive you made yourself)"
            )
        with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as tmp:
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    _extract(tar, Path(tmp))
            except (tarfile.TarError, EOFError, zlib.error) as err:  # damaged, or not CIFAR's
                raise ConfigError(
                    f"{archive} cannot be unpacked ({err}): delete it to download it again"
                ) from None
            if not (Path(tmp) / spec.base_folder).is_dir():
                raise ConfigError(f"{archive} holds no {spec.base_folder}/: not {_NAMES[spec]}'s")
            os.replace(Path(tmp) / spec.base_folder, root / spec.base_folder)


def _extract(tar: tarfile.TarFile, into: Path) -> None:
    """Unpack files and folders only, each inside ``into``: tarfile's "data" filter where this
    Python has it (3.11.4 and later), else the same refusals by hand (Debian 12's 3.11.2)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
        return
    for member in tar.getmembers():
        inside = (into / member.name).resolve().is_relative_to(into.resolve())
        if not (member.isfile() or member.isdir()) or not inside:
            raise tarfile.TarError(f"{member.name} is not a file or folder inside the archive")
    tar.extractall(into)


def _missing(spec: Spec, root: Path, why: str) -> ConfigError:
    return ConfigError(
        f"{_NAMES[spec]} not found and {why}: put {spec.filename} or the unpacked "
        f"{spec.base_folder}/ in {root}/, or use data=fashion_mnist, which works offline"
    )


_NAMES = {datasets.CIFAR10: "CIFAR-10", datasets.CIFAR100: "CIFAR-100"}


def _arrays(dataset: datasets.CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return images, torch.tensor(dataset.targets, dtype=torch.long)


def _load(spec: Spec, root: str, verify: bool, download: bool) -> ImageArrays:
    root_path = fetch.folder(root)
    _fetch(spec, root_path, verify, download)
    try:
        train, test = (_open(spec, root_path, t, verify) for t in (True, False))
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        raise ConfigError(
            f"{_NAMES[spec]} in {root_path / spec.base_folder} is incomplete or fails the md5 "
            "check; delete it to fetch it again (data.dataset.verify=false skips the check)"
        ) from None
    return ImageArrays(*_arrays(train), *_arrays(test), classes=list(train.classes))


@register("data", "cifar10")
def cifar10(root: str = "data", verify: bool = True, download: bool = True) -> ImageArrays:
    """The 50,000 training and 10,000 test images of CIFAR-10, as uint8 tensors."""
    return _load(datasets.CIFAR10, root, verify, download)


@register("data", "cifar100")
def cifar100(root: str = "data", verify: bool = True, download: bool = True) -> ImageArrays:
    """CIFAR-100's 50,000 training and 10,000 test images, labelled by its 100 fine classes."""
    return _load(datasets.CIFAR100, root, verify, download)
