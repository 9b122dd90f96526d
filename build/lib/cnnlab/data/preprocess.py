"""Input normalisation, selected with ``preprocess=NAME`` (seeds 002, 003, 004)."""

import torch
from torchvision.transforms import v2

from cnnlab.errors import ConfigError


def per_image(kind: str, mean: list[float], std: list[float]) -> list:
    """The transforms that finish each image: standardise per channel, or map [0, 1] to [-1, 1].
    ZCA works on whole batches (see ``Whitening``), so it adds nothing here."""
    if kind == "standardize":
        return [v2.Normalize(mean, std)]
    if kind == "minmax":  # pixels span [0, 255]: min-max scaling is a fixed affine map
        return [v2.Normalize([0.5] * len(mean), [0.5] * len(mean))]
    if kind == "zca":
        return []
    raise ConfigError(f"unknown preprocess '{kind}'; choose from: standardize, minmax, zca")


class Whitening(torch.nn.Module):
    """ZCA whitening: x -> W (x - mu) with W = U diag(1 / sqrt(s + eps)) U^T from the
    eigendecomposition U diag(s) U^T of the training images' covariance. Decorrelates
    neighbouring pixels while staying as close as possible to the original image."""

    def __init__(self, images: torch.Tensor, eps: float = 0.01):
        super().__init__()
        x = images.flatten(1).double()
        mean = x.mean(0)
        x = x - mean
        s, u = torch.linalg.eigh(x.T @ x / len(x))
        w = u @ torch.diag((s.clamp(min=0) + eps).rsqrt()) @ u.T
        self.register_buffer("mean", mean.float())
        self.register_buffer("matrix", w.float())

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        flat = batch.flatten(1) - self.mean
        return (flat @ self.matrix).view_as(batch)  # W is symmetric: W x = x W^T
