"""The LightningDataModule: load a registered data set, split it, augment it, mix it."""

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import lightning as L
import torch
import torch.distributed as dist
from annotated_types import Ge, Le
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from timm.data import Mixup
from torch import nn
from torch.utils.data import DataLoader

from cnnlab import registry
from cnnlab.data.arrays import ImageArrays, ImageDataset, whole_batch
from cnnlab.data.augment import check_flips
from cnnlab.data.preprocess import MinMax, Standardize, Whitening, preprocess_options
from cnnlab.data.split import check_folds, held_out
from cnnlab.data.stats import cached, channel_stats, fingerprint, zca
from cnnlab.errors import ConfigError
from cnnlab.options import (
    Count,
    Fraction,
    Natural,
    NonNegative,
    Positive,
    Probability,
    Target,
    check_options,
)
from cnnlab.registry import build

log = logging.getLogger(__name__)
# What __init__'s own check skips: the nodes that are checked against their own declarations.
NOT_OPTIONS = ("self", "__class__", "dataset", "augment", "preprocess")


class ImageDataModule(L.LightningDataModule):
    """Train/val/test loaders for one data set of the ``data`` registry.

    Images stay uint8 until their batch is on the device that trains: there they become floats
    in [0, 1] and (training only) go through the ``augment`` transforms, which work on the whole
    batch with a random draw per image, and mixup/cutmix. The ``preprocess`` normalisation is
    computed here, from the training split, and applied by the model (``Classifier`` takes it
    when fitting starts), so that a checkpoint classifies raw images. On a GPU the whole uint8
    data set is copied to its memory once (``on_device``), so no batch crosses from the host.
    The arguments are the keys of a ``conf/data`` file, plus the ``augment`` and ``preprocess``
    groups.

    Args:
        dataset: the registry entry and its options, e.g. ``{name: cifar10, root: data}``.
        augment: ``transforms`` (batched modules, in order), ``mixup_alpha``, ``cutmix_alpha``
            (0 turns each off), ``mix_prob``, ``switch_prob``.
        preprocess: ``{name: standardize | minmax | zca, ...}``.
        in_channels, image_size, num_classes: what the images must be; checked when loaded.
        mean, std: per-channel statistics for ``standardize``; None: computed from the training
            split (cached in ``cache_dir``).
        batch_size: of training; ``eval_batch_size`` of validation and test (None: the same).
        val_split: fraction of the training set held out for validation; 0 means no validation.
        split_seed: the seed of that split, and of the folds.
        folds, fold: k-fold cross-validation: the training set dealt into ``folds`` stratified
            folds; the run validates on fold ``fold`` and trains on the others (``val_split``
            is not used). ``-m data.fold=range(K)`` runs them all.
        val_on_test: validate on the test set every epoch, as Keras' ``validation_data`` does in
            the Keras hyper-parameter slides (curves only: needs ``val_split=0``, so nothing
            is selected on it).
        shuffle: reshuffle the training set every epoch (the 79%→90% slides' "random
            shuffling").
        hflip: the chance of a left-right flip, for the augment configs that flip
            (``${data.hflip}``); 0 for data sets whose mirror image changes the class.
        vflip: the same for up-down flips (``${data.vflip}``). A data set that sets either to 0
            refuses an augmentation that flips that way anyway (one added by hand).
        on_device: ``auto`` keeps the data set in GPU memory when training on a GPU and it takes
            under a quarter of the free memory; ``true`` insists, ``false`` copies each batch.
        cache_dir: where computed statistics are kept; None computes them every run.
        train_subset, test_subset: keep only the first N images (quick runs); None keeps all.
    """

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
        self.preprocess = dict(preprocess or {"name": "standardize"})
        check_options(preprocess_options, self.preprocess, "preprocess")
        self.mixup = _mixup(augment, num_classes)
        self.augment = nn.Sequential(_augmentations(augment))
        check_flips(self.augment, {"hflip": hflip, "vflip": vflip}, dataset["name"])
        self.normalize: nn.Module | None = None  # set in setup(): it needs the training split
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
        self.normalize = self._normalization(self.train_set)

    def _split(self, arrays: ImageArrays) -> tuple[ImageDataset, ImageDataset]:
        """The training and validation sets: the data set's own validation images, a fold, or
        a held-out share of the training set."""
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

    def _normalization(self, train: ImageDataset) -> nn.Module:
        """What ``preprocess`` asks for, its statistics taken from the training split."""
        h, kind = self.hparams, self.preprocess["name"]
        if kind == "minmax":
            return MinMax()
        if kind == "standardize" and h.mean is not None:
            return Standardize(torch.tensor(h.mean), torch.tensor(h.std))
        key = f"{h.dataset['name']}-{fingerprint(train.images, train.labels)}"  # of the cache
        if kind == "zca":
            fit, eps = self.preprocess.get("fit_images", 10_000), self.preprocess.get("eps", 0.01)
            images = train.images[:fit]
            matrix = cached(
                h.cache_dir,
                f"zca-{key}-{len(images)}-{eps}",
                lambda: zca(images.float() / 255, eps),
            )
            return Whitening(matrix["mean"], matrix["matrix"])
        stats = cached(h.cache_dir, f"stats-{key}", lambda: channel_stats(train.images))
        log.info(
            f"{h.dataset['name']}: training split mean {_rounded(stats['mean'])}, "
            f"std {_rounded(stats['std'])}"
        )
        return Standardize(stats["mean"], stats["std"])

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
        # Mixup pairs each image with its mirror in the batch, so batches must be even.
        h = self.hparams
        return self._loader(
            self.train_set, h.batch_size, h.shuffle, drop_last=bool(self.mixup), training=True
        )

    def val_dataloader(self) -> DataLoader | list:
        validates = self.has_validation or self.hparams.val_on_test
        return self._loader(self.val_set, self._eval_batch_size) if validates else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self._eval_batch_size)

    @property
    def _eval_batch_size(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        x = images.float().div_(255)
        training = self.trainer is not None and self.trainer.training
        if training:
            x = self.augment(x)
        if training and self.mixup is not None:  # before the model normalises: both are
            x, labels = self.mixup(x, labels)  # linear. Labels become (N, classes) soft targets
        return x, labels

    def _loader(
        self,
        dataset: ImageDataset,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        training: bool = False,
    ) -> DataLoader:
        device = self._device()
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
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=whole_batch,
            # Batches copied from the host to a GPU: from page-locked memory, without waiting.
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
    """A DataLoader whose epoch starts at its first batch, not when Lightning asks for the
    iterator (ahead of the epoch, for a run's first one): the shuffle is then drawn after
    cnnlab.run.seeds.EpochSeed has seeded the epoch, in a fresh run and a resumed one alike."""

    def __iter__(self):
        yield from super().__iter__()


def _augmentations(augment: Mapping[str, Any]) -> OrderedDict[str, nn.Module]:
    """The transforms by their config keys (so that an error can name one by its place)."""
    transforms = augment.get("transforms") or {}
    return OrderedDict(
        (k, build(t, where=f"augment.transforms.{k}")) for k, t in transforms.items() if t
    )


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in values.tolist()]


def augment_options(
    transforms: dict[str, Target | None] | None = None,
    mixup_alpha: NonNegative = 0.0,
    cutmix_alpha: NonNegative = 0.0,
    mix_prob: Probability = 1.0,
    switch_prob: Probability = 0.5,
) -> None:
    """The ``augment`` group's options: ``transforms`` (each a ``_target_``, applied in order
    to whole batches on the device), and timm's mixup and cutmix (0 turns each off)."""


def _mixup(augment: Mapping[str, Any], num_classes: int) -> Mixup | None:
    """timm's Mixup: mixup with lambda ~ Beta(alpha, alpha) (the ResNet report) and/or
    cutmix, or None."""
    check_options(augment_options, augment, "augment")
    mixup, cutmix = augment.get("mixup_alpha", 0.0), augment.get("cutmix_alpha", 0.0)
    if (mixup == 0 and cutmix == 0) or augment.get("mix_prob", 1.0) == 0:
        return None
    # Smoothing stays at 0 here: the loss applies label_smoothing to soft targets as well.
    return Mixup(
        mixup_alpha=mixup,
        cutmix_alpha=cutmix,
        prob=augment.get("mix_prob", 1.0),
        switch_prob=augment.get("switch_prob", 0.5),
        label_smoothing=0.0,
        num_classes=num_classes,
    )
