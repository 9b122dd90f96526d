"""Input normalisation of whole batches (``preprocess=NAME``), the model's first step: built empty
(what a checkpoint's state dict fills in), then ``fit`` to the training split."""

import logging
from collections.abc import Callable
from typing import Annotated

import torch
from annotated_types import Ge
from torch import nn

from cnnlab.data.stats import channel_stats, zca
from cnnlab.options import Positive, Supplied
from cnnlab.registry import register

log = logging.getLogger(__name__)
Cached = Callable[[str, Callable[[], dict]], dict]  # (name, compute) -> what compute returns


@register("preprocess", "standardize")
class Standardize(nn.Module):
    """(x - mean) / std per channel: ``data.mean``/``std`` if set, else the training split's."""

    def __init__(
        self,
        channels: Supplied[int] = 3,
        mean: Supplied[list[float] | None] = None,
        std: Supplied[list[float] | None] = None,
    ):
        super().__init__()
        self.given = mean is not None
        mean = torch.zeros(channels) if mean is None else torch.tensor(mean)
        std = torch.ones(channels) if std is None else torch.tensor(std)
        self.register_buffer("mean", mean.float().view(-1, 1, 1))
        self.register_buffer("std", std.float().view(-1, 1, 1))

    def fit(self, images: torch.Tensor, cached: Cached) -> None:
        if not self.given:
            stats = cached("stats", lambda: channel_stats(images))
            self.mean.copy_(stats["mean"].view(-1, 1, 1))
            self.std.copy_(stats["std"].view(-1, 1, 1))
            rounded = {k: [round(v, 4) for v in stats[k].tolist()] for k in ("mean", "std")}
            log.info(f"training split: mean {rounded['mean']}, std {rounded['std']}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@register("preprocess", "minmax")
class MinMax(nn.Module):
    """Pixels span [0, 1], so min-max scaling to [-1, 1] is a fixed affine map."""

    def fit(self, images: torch.Tensor, cached: Cached) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1


@register("preprocess", "zca")
class Whitening(nn.Module):
    """ZCA whitening x -> W (x - mu), fitted on the first ``fit_images`` training images: it
    decorrelates neighbouring pixels while staying as close as possible to the original image."""

    def __init__(
        self,
        channels: Supplied[int] = 3,
        size: Supplied[int] = 32,
        eps: Positive = 0.01,
        fit_images: Annotated[int, Ge(2)] = 10_000,
    ):
        super().__init__()
        self.eps, self.fit_images = eps, fit_images
        pixels = channels * size * size
        self.register_buffer("mean", torch.zeros(pixels))
        self.register_buffer("matrix", torch.zeros(pixels, pixels))

    def fit(self, images: torch.Tensor, cached: Cached) -> None:
        chosen = images[: self.fit_images]
        name = f"zca-{len(chosen)}-{self.eps}"
        found = cached(name, lambda: zca(chosen.float() / 255, self.eps))
        self.mean.copy_(found["mean"])
        self.matrix.copy_(found["matrix"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1) - self.mean
        return (flat @ self.matrix).view_as(x)  # W is symmetric: W x = x W^T
