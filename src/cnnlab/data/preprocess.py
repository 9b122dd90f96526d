"""Input normalisation of whole batches, selected with ``preprocess=NAME`` (the NIN lab report,
the CNN tricks slides, the ResNet report)."""

from typing import Annotated, Literal

import torch
from annotated_types import Ge
from torch import nn

from cnnlab.options import Positive, check_options

KINDS = ("standardize", "minmax", "zca")


class Standardize(nn.Module):
    """(x - mean) / std per channel."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MinMax(nn.Module):
    """Pixels span [0, 255], so min-max scaling to [-1, 1] is a fixed affine map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1


class Whitening(nn.Module):
    """ZCA whitening: x -> W (x - mu) (see ``cnnlab.data.stats.zca``). Decorrelates
    neighbouring pixels while staying as close as possible to the original image."""

    def __init__(self, mean: torch.Tensor, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("matrix", matrix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1) - self.mean
        return (flat @ self.matrix).view_as(x)  # W is symmetric: W x = x W^T


def placeholder(kind: str | None, channels: int, size: int) -> nn.Module:
    """``kind``'s module with statistics of the right shapes but no values: what a checkpoint's
    state dict fills in (``Classifier.load_from_checkpoint``). None: no preprocessing."""
    if kind is None:
        return nn.Identity()
    check_kind(kind)
    if kind == "minmax":
        return MinMax()
    if kind == "standardize":
        return Standardize(torch.zeros(channels), torch.ones(channels))
    pixels = channels * size * size
    return Whitening(torch.zeros(pixels), torch.zeros(pixels, pixels))


def preprocess_options(
    name: Literal["standardize", "minmax", "zca"] = "standardize",
    eps: Positive = 0.01,
    fit_images: Annotated[int, Ge(2)] = 10_000,
) -> None:
    """The ``preprocess`` group's options (``eps`` and ``fit_images`` are ZCA's: the
    whitening's regulariser and how many training images its matrix is fitted on)."""


def check_kind(kind: str) -> None:
    check_options(preprocess_options, {"name": kind}, "preprocess")
