"""The few augmentations of seed 000's table (imgaug's) that torchvision has no exact match for.

Each works on one float image (C, H, W) in [0, 1] and draws its randomness per call, so every
image in a batch gets its own.
"""

import torch
from torch import nn
from torchvision.transforms.v2 import functional as F


class CropSides(nn.Module):
    """Cut a random 0..``max_fraction`` of the height/width off each side and resize back
    (imgaug's ``Crop(percent=(0, 0.1))``)."""

    def __init__(self, max_fraction: float = 0.1):
        super().__init__()
        self.max_fraction = max_fraction

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        top, bottom, left, right = (torch.rand(4) * self.max_fraction).tolist()
        rows = slice(int(top * h), h - int(bottom * h))
        cols = slice(int(left * w), w - int(right * w))
        return F.resize(img[..., rows, cols], [h, w], antialias=True)


class AdditiveNoise(nn.Module):
    """Add N(0, s^2) with s ~ U(0, max_sigma) per image; for a ``per_channel`` share of images
    each channel gets its own noise, for the rest all channels share it (imgaug's
    ``AdditiveGaussianNoise(scale=(0, 0.05*255), per_channel=0.5)``). Clipped to [0, 1]."""

    def __init__(self, max_sigma: float = 0.05, per_channel: float = 0.5):
        super().__init__()
        self.max_sigma, self.per_channel = max_sigma, per_channel

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        sigma = torch.rand(()) * self.max_sigma
        shape = img.shape if torch.rand(()) < self.per_channel else (1, *img.shape[1:])
        return (img + torch.randn(shape) * sigma).clamp(0, 1)


class Multiply(nn.Module):
    """Multiply by a factor from U(low, high), drawn per channel for a ``per_channel`` share of
    images (imgaug's ``Multiply((0.8, 1.2), per_channel=0.2)``). Clipped to [0, 1]."""

    def __init__(self, low: float = 0.8, high: float = 1.2, per_channel: float = 0.2):
        super().__init__()
        self.low, self.high, self.per_channel = low, high, per_channel

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        n = img.shape[0] if torch.rand(()) < self.per_channel else 1
        factor = torch.empty(n, 1, 1).uniform_(self.low, self.high)
        return (img * factor).clamp(0, 1)
