"""Augmentations of whole float batches (N, C, H, W) in [0, 1], a random draw per image, that
kornia (which the ``augment`` configs use for the rest) has no match for: crop+flip as one gather
(every preset's hot path, as in airbench), the imgaug steps of the 79%→90% slides' table, and
AutoAugment with a sub-policy per image (kornia draws one per batch)."""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from annotated_types import Ge, Le, Lt
from kornia.augmentation.auto import AutoAugment as KorniaAutoAugment
from kornia.geometry.transform import crop_and_resize
from timm.data import Mixup
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.options import NonNegative, Probability, Target
from cnnlab.registry import build


def _chance(p: float, x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 1, 1) booleans, true for a share ``p`` of the images."""
    return torch.rand(len(x), 1, 1, 1, device=x.device) < p


def _ordered(low: float, high: float) -> None:
    """A range's ends in order: the one relation an annotation cannot state."""
    if low > high:
        raise ValueError(f"low={low} is above high={high}")


class CropFlip(nn.Module):
    """torchvision's RandomCrop(padding) + RandomHorizontalFlip(flip), as one batched gather."""

    def __init__(self, padding: Annotated[int, Ge(0), Le(64)] = 4, flip: Probability = 0.5):
        super().__init__()
        self.padding, self.flip = padding, flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p, dev = self.padding, x.device
        padded = F.pad(x, (p, p, p, p)).flatten(2) if p else x.flatten(2)
        # Each output pixel's position in its padded image, flipped or not: one gather.
        top = torch.randint(0, 2 * p + 1, (n, 1, 1), device=dev)
        left = torch.randint(0, 2 * p + 1, (n, 1, 1), device=dev)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        cols = torch.where(_chance(self.flip, x).view(n, 1, 1), w - 1 - cols, cols)
        rows = top + torch.arange(h, device=dev).view(1, h, 1)
        where = (rows * (w + 2 * p) + left + cols).view(n, 1, h * w).expand(n, c, h * w)
        return padded.gather(2, where).view(n, c, h, w)


# Each flip of cnnlab's presets: the attribute holding its chance, the data setting allowing it.
FLIPS = {
    "CropFlip": ("flip", "hflip"),
    "RandomHorizontalFlip": ("p", "hflip"),
    "RandomVerticalFlip": ("p", "vflip"),
}


def check_flips(augment: nn.Module, allowed: dict[str, float], name: str) -> None:
    """Refuse a flip the data set forbids (``allowed``: its ``hflip`` and ``vflip``; 0 for a
    mirrored digit, which is another digit), wherever in the augmentations it sits."""
    for place, module in augment.named_modules():
        attr, setting = FLIPS.get(type(module).__name__, (None, None))
        chance = float(getattr(module, attr, 0) or 0) if attr else 0
        if chance > 0 and allowed[setting] == 0:
            raise ConfigError(
                f"augment.transforms.{place} flips images ({type(module).__name__}, "
                f"p={chance}), but {name} sets data.{setting}=0: its images are never flipped "
                "so; remove that transform"
            )


class RandomOrder(nn.Module):
    """Every transform, in a random order drawn per batch (imgaug's Sequential(random_order))."""

    def __init__(self, transforms: Sequence[nn.Module]):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in torch.randperm(len(self.transforms)).tolist():
            x = self.transforms[i](x)
        return x


class CropSides(nn.Module):
    """Cut a random 0..``max_fraction`` off each side, resize back (imgaug's Crop(percent=...))."""

    def __init__(self, max_fraction: Annotated[float, Ge(0), Lt(0.5)] = 0.1):
        super().__init__()
        self.max_fraction = max_fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        size = torch.tensor([h, h, w, w], device=x.device)
        cut = (torch.rand(n, 4, device=x.device) * self.max_fraction * size).floor()
        top, bottom, left, right = cut.unbind(1)
        x0, x1, y0, y1 = left, w - 1 - right, top, h - 1 - bottom
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]  # clockwise, (x, y), inclusive
        boxes = torch.stack([torch.stack(corner, 1) for corner in corners], 1)
        return crop_and_resize(x, boxes, (h, w))


class LinearContrast(nn.Module):
    """v -> 0.5 + a (v - 0.5), a ~ U(low, high) per image (imgaug's ``LinearContrast``, which
    pivots on mid-grey, not on the image's mean as torchvision's ColorJitter does)."""

    def __init__(self, low: NonNegative = 0.75, high: NonNegative = 1.5):
        super().__init__()
        _ordered(low, high)
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.empty(len(x), 1, 1, 1, device=x.device).uniform_(self.low, self.high)
        return (0.5 + a * (x - 0.5)).clamp(0, 1)


class GaussianNoise(nn.Module):
    """Add N(0, sigma^2) noise to every pixel and channel, clipped to [0, 1] (as torchvision)."""

    def __init__(self, sigma: NonNegative = 0.1):
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.randn_like(x) * self.sigma).clamp(0, 1)


class AdditiveNoise(nn.Module):
    """Add N(0, s^2), s ~ U(0, max_sigma) per image, drawn per channel for a ``per_channel``
    share of images (imgaug's ``AdditiveGaussianNoise(scale=(0, 0.05*255), per_channel=0.5)``)."""

    def __init__(self, max_sigma: NonNegative = 0.05, per_channel: Probability = 0.5):
        super().__init__()
        self.max_sigma, self.per_channel = max_sigma, per_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = torch.rand(len(x), 1, 1, 1, device=x.device) * self.max_sigma
        noise = torch.randn_like(x)
        noise = torch.where(_chance(self.per_channel, x), noise, noise[:, :1])
        return (x + noise * sigma).clamp(0, 1)


class Multiply(nn.Module):
    """Multiply by a factor from U(low, high) per image, drawn per channel for a ``per_channel``
    share of images (imgaug's ``Multiply((0.8, 1.2), per_channel=0.2)``). Clipped to [0, 1]."""

    def __init__(
        self, low: NonNegative = 0.8, high: NonNegative = 1.2, per_channel: Probability = 0.2
    ):
        super().__init__()
        _ordered(low, high)
        self.low, self.high, self.per_channel = low, high, per_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        factor = torch.empty(n, c, 1, 1, device=x.device).uniform_(self.low, self.high)
        factor = torch.where(_chance(self.per_channel, x), factor, factor[:, :1])
        return (x * factor).clamp(0, 1)


class AutoAugment(nn.Module):
    """kornia's AutoAugment policy, with a sub-policy drawn for each image, not each batch."""

    def __init__(self, policy: Literal["cifar10", "svhn", "imagenet"] = "cifar10"):
        super().__init__()
        self.policies = nn.ModuleList(KorniaAutoAugment(policy).children())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Drawn on the host, so that splitting the batch never waits for the device.
        chosen = torch.randint(0, len(self.policies), (len(x),))
        out = x.clone()
        for i, policy in enumerate(self.policies):
            rows = (chosen == i).nonzero().flatten()
            if len(rows):
                rows = rows.to(x.device, non_blocking=True)
                out[rows] = policy(x[rows])
        return out


@dataclass(frozen=True)
class Augmentation:
    """The ``augment`` node: ``transforms`` (each a ``_target_``, in order), and timm's mixup
    (lambda ~ Beta(alpha, alpha), the ResNet report) and cutmix on ``mix_prob`` of the batches."""

    transforms: dict[str, Target | None] | None = None
    mixup_alpha: NonNegative = 0.0
    cutmix_alpha: NonNegative = 0.0
    mix_prob: Probability = 1.0
    switch_prob: Probability = 0.5

    def steps(self) -> nn.Sequential:
        """The transforms, by their config keys (so that an error names one by its place)."""
        built = OrderedDict(
            (key, build(node, where=f"augment.transforms.{key}"))
            for key, node in (self.transforms or {}).items()
            if node
        )
        return nn.Sequential(built)

    def mixing(self, num_classes: int) -> Mixup | None:
        """timm's Mixup, or None when it would never mix."""
        if (self.mixup_alpha == 0 and self.cutmix_alpha == 0) or self.mix_prob == 0:
            return None
        # Smoothing stays at 0 here: the loss applies label_smoothing to soft targets as well.
        return Mixup(
            mixup_alpha=self.mixup_alpha,
            cutmix_alpha=self.cutmix_alpha,
            prob=self.mix_prob,
            switch_prob=self.switch_prob,
            label_smoothing=0.0,
            num_classes=num_classes,
        )
