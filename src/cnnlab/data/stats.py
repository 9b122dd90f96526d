"""Statistics of a training split, computed once and cached: per-channel mean and std, and the
ZCA whitening matrix (a 3072 x 3072 eigendecomposition for CIFAR, seconds on a CPU)."""

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from cnnlab.files import atomic


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A short hash that changes with the split: its size, labels and a sample of its images."""
    digest = hashlib.sha1(repr(tuple(images.shape)).encode())
    digest.update(labels.cpu().numpy().tobytes())
    digest.update(images[:: max(1, len(images) // 1000)].cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached(cache_dir: str | None, name: str, compute: Callable[[], dict]) -> dict:
    """``compute()``'s tensors, read from ``cache_dir/name.pt`` if an earlier run wrote them."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{name}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a damaged cache file is recomputed and replaced, never trusted
            pass
    values = compute()
    with atomic(path) as tmp:
        torch.save(values, tmp)
    return values


def channel_stats(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean and std per channel of uint8 images (N, C, H, W) in [0, 1] units, exact, from each
    channel's histogram: no float or int64 copy of the data set is made."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean, std = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].flatten().cpu(), minlength=256).double()
        p = counts / counts.sum()
        m = (p * levels).sum()
        mean.append(m)
        std.append(((p * (levels - m) ** 2).sum()).sqrt())
    return {"mean": torch.stack(mean).float(), "std": torch.stack(std).float()}


def zca(images: torch.Tensor, eps: float) -> dict[str, torch.Tensor]:
    """W = U diag(1 / sqrt(s + eps)) U^T from the eigendecomposition U diag(s) U^T of the
    covariance of float images (N, C, H, W) in [0, 1], and their mean."""
    x = images.flatten(1).double()
    mean = x.mean(0)
    x = x - mean
    s, u = torch.linalg.eigh(x.T @ x / len(x))
    w = u @ torch.diag((s.clamp(min=0) + eps).rsqrt()) @ u.T
    return {"mean": mean.float(), "matrix": w.float()}
