"""The LightningDataModule: load a registered data set, split it, augment it, mix it."""

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from hydra.utils import instantiate
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from timm.data import Mixup
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from cnnlab import registry
from cnnlab.data.arrays import ImageArrays, ImageDataset
from cnnlab.data.preprocess import Whitening, per_image
from cnnlab.data.split import stratified_split
from cnnlab.errors import ConfigError


class ImageDataModule(L.LightningDataModule):
    """Train/val/test loaders for one data set of the ``data`` registry.

    Each image becomes a float tensor in [0, 1], then (training only) goes through the
    ``augment`` transforms, then the ``preprocess`` normalisation. Mixup/cutmix and ZCA
    whitening work on whole batches, on the device. The arguments are the keys of a
    ``conf/data`` file, plus the ``augment`` and ``preprocess`` groups.

    Args:
        dataset: the registry entry and its options, e.g. ``{name: cifar10, root: data}``.
        augment: ``transforms`` (torchvision v2 configs, in order), ``mixup_alpha``,
            ``cutmix_alpha`` (0 turns each off), ``mix_prob``, ``switch_prob``.
        preprocess: ``{name: standardize | minmax | zca, ...}``.
        in_channels, image_size, num_classes: what the images must be; checked when loaded.
        mean, std: per-channel statistics of the data set, for ``standardize``.
        val_split: fraction of the training set held out for validation; 0 means no validation.
        split_seed: the seed of that split.
        val_on_test: validate on the test set every epoch, as Keras' ``validation_data`` does in
            seed 001 (curves only: needs ``val_split=0``, so nothing is selected on it).
        shuffle: reshuffle the training set every epoch (seed 000's "random shuffling").
        train_subset, test_subset: keep only the first N images (quick runs); None keeps all.
    """

    def __init__(
        self,
        dataset: Mapping[str, Any],
        augment: Mapping[str, Any],
        mean: Sequence[float],
        std: Sequence[float],
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        preprocess: Mapping[str, Any] | None = None,
        batch_size: int = 128,
        val_split: float = 0.1,
        split_seed: int = 0,
        val_on_test: bool = False,
        shuffle: bool = True,
        num_workers: int = 2,
        train_subset: int | None = None,
        test_subset: int | None = None,
    ):
        super().__init__()
        if not 0 <= val_split < 1:
            raise ConfigError(f"data.val_split must be in [0, 1), got {val_split}")
        if val_on_test and val_split:
            raise ConfigError(
                "data.val_on_test=true needs data.val_split=0: validating on the test set "
                "replaces a held-out split, it does not sit beside one"
            )
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1, got {batch_size}")
        if not len(mean) == len(std) == in_channels:
            raise ConfigError(
                f"data.mean and data.std need one value per channel (data.in_channels="
                f"{in_channels}), got {len(mean)} and {len(std)}"
            )
        self.load = registry.factory("data", dataset)
        self.save_hyperparameters(logger=False)
        self.preprocess = dict(preprocess or {"name": "standardize"})
        self.mixup = _mixup(augment, num_classes)
        to_float = [v2.ToDtype(torch.float32, scale=True)]
        finish = per_image(self.preprocess["name"], list(mean), list(std))
        self.train_transform = v2.Compose([*to_float, *_augmentations(augment), *finish])
        self.eval_transform = v2.Compose([*to_float, *finish])
        self.whiten: Whitening | None = None
        self.arrays: ImageArrays | None = None

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
        train_idx, val_idx = stratified_split(arrays.train_labels, h.val_split, h.split_seed)
        if h.val_split and not len(val_idx):
            raise ConfigError(
                f"data.val_split={h.val_split} leaves no validation image "
                f"({len(train_idx)} training images); raise it or set it to 0"
            )
        train_images = arrays.train_images[train_idx]
        self.train_set = ImageDataset(
            train_images, arrays.train_labels[train_idx], self.train_transform
        )
        self.val_set = ImageDataset(
            arrays.train_images[val_idx], arrays.train_labels[val_idx], self.eval_transform
        )
        self.test_set = ImageDataset(arrays.test_images, arrays.test_labels, self.eval_transform)
        if h.val_on_test:
            self.val_set = self.test_set
        if self.preprocess["name"] == "zca":
            fit = train_images[: self.preprocess.get("fit_images", 10_000)].float() / 255
            self.whiten = Whitening(fit, self.preprocess.get("eps", 0.01))

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
    def has_validation(self) -> bool:
        return self.hparams.val_split > 0

    def train_dataloader(self) -> DataLoader:
        # Mixup pairs each image with its mirror in the batch, so batches must be even.
        shuffle = self.hparams.shuffle
        return self._loader(self.train_set, shuffle=shuffle, drop_last=self.mixup is not None)

    def val_dataloader(self) -> DataLoader | list:
        validates = self.has_validation or self.hparams.val_on_test
        return self._loader(self.val_set) if validates else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        if self.whiten is not None:
            images = self.whiten.to(images.device)(images)
        if self.mixup is not None and self.trainer is not None and self.trainer.training:
            images, labels = self.mixup(images, labels)  # labels become (N, classes) soft targets
        return images, labels

    def _loader(self, dataset, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        workers = self.hparams.num_workers
        sampler = None
        if not shuffle and dist.is_available() and dist.is_initialized():
            # Under DDP, each process evaluates its own share of the images, none twice:
            # Lightning's default sampler pads the shares with repeats, which biases accuracy.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return LazyLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=workers,
            # Fresh workers each epoch take their seeds from the epoch's (cnnlab.resume.EpochSeed),
            # so a resumed run augments exactly as the uninterrupted one; persistent ones would not.
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )


class LazyLoader(DataLoader):
    """A DataLoader whose epoch starts at its first batch, not when Lightning asks for the
    iterator (ahead of the epoch, for a run's first one): the shuffle and the workers' seeds are
    then drawn after cnnlab.resume.EpochSeed has seeded the epoch, in a fresh run and a resumed
    one alike."""

    def __iter__(self):
        yield from super().__iter__()


def _augmentations(augment: Mapping[str, Any]) -> list:
    transforms = augment.get("transforms") or {}
    return [instantiate(t, _convert_="all") for t in transforms.values() if t is not None]


def _mixup(augment: Mapping[str, Any], num_classes: int) -> Mixup | None:
    """timm's Mixup: mixup with lambda ~ Beta(alpha, alpha) (seed 004) and/or cutmix, or None."""
    mixup, cutmix = augment.get("mixup_alpha", 0.0), augment.get("cutmix_alpha", 0.0)
    if mixup < 0 or cutmix < 0:
        raise ConfigError(
            f"augment.mixup_alpha and cutmix_alpha must be >= 0, got {mixup}, {cutmix}"
        )
    if mixup == 0 and cutmix == 0:
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
