"""The LightningDataModule: load a registered data set, split it, augment it, mix it."""

import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import lightning as L
import torch
import torch.distributed as dist
from annotated_types import Ge, Le
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from cnnlab import registry
from cnnlab.data.arrays import ImageArrays, ImageDataset, whole_batch
from cnnlab.data.augment import Augmentation, check_flips
from cnnlab.data.split import check_folds, held_out
from cnnlab.data.stats import cached, fingerprint
from cnnlab.errors import ConfigError
from cnnlab.options import Count, Fraction, Natural, Positive, Probability, check_options, read

log = logging.getLogger(__name__)
# What __init__'s own check skips: the nodes that are checked against their own declarations.
NOT_OPTIONS = ("self", "__class__", "dataset", "augment", "preprocess")


class ImageDataModule(L.LightningDataModule):
    """Train/val/test loaders for one data set of the ``data`` registry (README.md, Data).

    Images stay uint8 until their batch is on the device that trains; there they become floats
    in [0, 1] and (training only) go through ``augment`` and mixup/cutmix. ``preprocess`` is fitted
    here, on the training split, and applied by the model, so a checkpoint classifies raw images."""

    def __init__(
        self,
        dataset: Mapping[str, Any],
        augment: Mapping[str, Any],
        num_classes: Annotated[int, Ge(2), Le(100_000)],
        in_channels: Annotated[int, Ge(1), Le(16)] = 3,
        image_size: Annotated[int, Ge(1), Le(4096)] = 32,
        mean: list[float] | None = None,
        std: list[Positive] | None = None,
        preprocess: Mapping[str, Any] | None = None,
        batch_size: Count = 128,
        eval_batch_size: Count | None = None,
        val_split: Fraction = 0.1,
        split_seed: Natural = 0,
        folds: Annotated[int, Ge(2), Le(1000)] | None = None,
        fold: Natural | None = None,
        val_on_test: bool = False,
        shuffle: bool = True,
        hflip: Probability = 0.5,
        vflip: Probability = 0.5,
        on_device: bool | Literal["auto"] = "auto",
        cache_dir: str | None = None,
        train_subset: Count | None = None,
        test_subset: Count | None = None,
    ):
        given = {k: v for k, v in locals().items() if k not in NOT_OPTIONS}
        check_options(ImageDataModule, given, "data")
        super().__init__()
        if val_on_test and val_split:
            raise ConfigError(
                "data.val_on_test=true needs data.val_split=0: validating on the test set "
                "replaces a held-out split, it does not sit beside one"
            )
        check_folds(folds, fold, val_on_test)
        if (mean is None) != (std is None):
            raise ConfigError("data.mean and data.std go together: set both, or neither")
        if mean is not None and not len(mean) == len(std) == in_channels:
            raise ConfigError(
                f"data.mean and data.std need one value per channel (data.in_channels="
                f"{in_channels}), got {len(mean)} and {len(std)}"
            )
        self.load = registry.factory("data", dataset, where="data.dataset")
        self.save_hyperparameters(logger=False)
        normalize = registry.factory("preprocess", preprocess or {"name": "standardize"})
        self.normalize = registry.supply(
            normalize, channels=in_channels, size=image_size, mean=mean, std=std
        )
        augmentation = read(Augmentation, augment, "augment")
        self.mixup = augmentation.mixing(num_classes)
        self.augment = augmentation.steps()
        check_flips(self.augment, {"hflip": hflip, "vflip": vflip}, dataset["name"])
        self.arrays: ImageArrays | None = None
        self._placed: dict[tuple[int, str], ImageDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is not None:
            return
        h = self.hparams
        arrays = self.load()
        arrays.train_images = arrays.train_images[: h.train_subset]
        arrays.train_labels = arrays.train_labels[: h.train_subset]
        arrays.test_images = arrays.test_images[: h.test_subset]
        arrays.test_labels = arrays.test_labels[: h.test_subset]
        self._check(arrays)
        self.arrays = arrays
        self.train_set, self.val_set = self._split(arrays)
        self.test_set = ImageDataset(arrays.test_images, arrays.test_labels)
        if h.val_on_test:
            self.val_set = self.test_set
        key = f"{h.dataset['name']}-{fingerprint(self.train_set.images, self.train_set.labels)}"
        self.normalize.fit(
            self.train_set.images,
            lambda name, compute: cached(h.cache_dir, f"{name}-{key}", compute),
        )

    def _split(self, arrays: ImageArrays) -> tuple[ImageDataset, ImageDataset]:
        h, name = self.hparams, self.hparams.dataset["name"]
        images, labels = arrays.train_images, arrays.train_labels
        if arrays.val_images is not None:
            if h.folds:
                raise ConfigError(
                    f"{name} has validation images of its own; data.folds splits the training "
                    "images into folds instead: drop one or the other"
                )
            return ImageDataset(images, labels), ImageDataset(arrays.val_images, arrays.val_labels)
        train_idx, val_idx = held_out(labels, h.val_split, h.split_seed, h.folds, h.fold)
        train = ImageDataset(images[train_idx], labels[train_idx])
        return train, ImageDataset(images[val_idx], labels[val_idx])

    def _check(self, arrays: ImageArrays) -> None:
        """The loaded images must be what the config says, or normalisation and the model's
        first layer would quietly work on something else."""
        h, name = self.hparams, self.hparams.dataset["name"]
        for split in ("train", "test"):
            images, labels = getattr(arrays, f"{split}_images"), getattr(arrays, f"{split}_labels")
            if len(labels) == 0:
                raise ConfigError(f"{name} has no {split} images (data.{split}_subset?)")
            _, channels, height, width = images.shape
            if channels != h.in_channels:
                raise ConfigError(
                    f"data.in_channels is {h.in_channels} but {name}'s images have {channels} "
                    f"channel(s); set data.in_channels={channels} (and one data.mean/std each)"
                )
            if height != h.image_size or width != h.image_size:
                raise ConfigError(
                    f"data.image_size is {h.image_size} but {name}'s images are {height}x{width}"
                )
            low, top = int(labels.min()), int(labels.max())
            if low < 0 or top >= h.num_classes:
                raise ConfigError(
                    f"data.num_classes is {h.num_classes} but {name} has labels {low}..{top}"
                )

    @property
    def class_names(self) -> list[str] | None:
        return self.arrays.classes if self.arrays is not None else None

    @property
    def has_validation(self) -> bool:
        """Whether a held-out set validates (to choose the best epoch by), once set up."""
        if self.arrays is not None:
            return len(self.val_set) > 0 and not self.hparams.val_on_test
        return self.hparams.val_split > 0 or self.hparams.folds is not None

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, training=True)

    def val_dataloader(self) -> DataLoader | list:
        validates = self.has_validation or self.hparams.val_on_test
        return self._loader(self.val_set) if validates else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        x = images.float().div_(255)
        training = self.trainer is not None and self.trainer.training
        if training:
            x = self.augment(x)
        if training and self.mixup is not None:  # before the model normalises: both are
            x, labels = self.mixup(x, labels)  # linear. Labels become (N, classes) soft targets
        return x, labels

    def _loader(self, dataset: ImageDataset, training: bool = False) -> DataLoader:
        h, device = self.hparams, self._device()
        if device is not None:
            key = (id(dataset), str(device))
            dataset = self._placed.setdefault(key, dataset.to(device))
        sampler = None
        if not training and dist.is_available() and dist.is_initialized():
            # Under DDP, each process evaluates its own share of the images, none twice:
            # Lightning's default sampler pads the shares with repeats, which biases accuracy.
            # Training keeps that default (also unshuffled): shares of unequal length would
            # leave one process waiting for the others' last step, for ever.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        root = self.trainer.strategy.root_device if self.trainer is not None else None
        return LazyLoader(
            dataset,
            batch_size=h.batch_size if training else (h.eval_batch_size or h.batch_size),
            shuffle=training and h.shuffle,
            sampler=sampler,
            # Mixup pairs each image with its mirror in the batch, so batches must be even.
            drop_last=training and self.mixup is not None,
            collate_fn=whole_batch,
            pin_memory=device is None and root is not None and root.type == "cuda",
        )

    def _device(self) -> torch.device | None:
        """The accelerator to keep the data sets on (data.on_device), or None for host memory."""
        setting, trainer = self.hparams.on_device, self.trainer
        if trainer is None or setting is False:
            return None
        device = trainer.strategy.root_device
        if device.type == "cpu":
            return None
        if device.type == "cuda":
            free = torch.cuda.mem_get_info(device)[0]
            size = self.arrays.train_images.nbytes + self.arrays.test_images.nbytes
            if size > free / 4:
                if setting is True:
                    raise ConfigError(
                        f"data.on_device=true, but the data set ({size / 2**30:.1f} GiB) takes "
                        f"over a quarter of the GPU's free memory ({free / 2**30:.1f} GiB); set "
                        "data.on_device=auto or false to copy each batch from the host"
                    )
                return None
        return device


class LazyLoader(DataLoader):
    """A DataLoader whose epoch starts at its first batch, not when Lightning asks for it (early,
    in a run's first epoch): the shuffle follows cnnlab.run.seeds.EpochSeed, resumed or not."""

    def __iter__(self):
        yield from super().__iter__()
