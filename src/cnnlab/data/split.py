"""Seeded, stratified splits of a training set: one held-out share, or K folds."""

import torch


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) with ``fraction`` of each class in val, the same for the same seed.

    Stratifying keeps the class balance of small validation sets, so a 1% split of CIFAR-10 still
    holds 50 images of every class.
    """
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = round(fraction * len(idx))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def fold_of(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """The fold (0..folds-1) of each image: each class's images shuffled with the seed, then all
    dealt out in turn, one class after another. Each class is then split evenly (its folds
    differ by one image at most), and so are the folds' sizes: the dealing goes on across
    classes."""
    gen = torch.Generator().manual_seed(seed)
    order = []
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        order.append(idx[torch.randperm(len(idx), generator=gen)])
    assigned = torch.empty_like(labels)
    dealt = torch.cat(order)
    assigned[dealt] = torch.arange(len(dealt)) % folds
    return assigned


def fold_split(
    labels: torch.Tensor, folds: int, fold: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) of fold ``fold`` of ``folds``: it validates on that fold and trains
    on the others, so the K runs of ``data.fold=range(K)`` validate once on every image."""
    held = fold_of(labels, folds, seed) == fold
    return (~held).nonzero().flatten(), held.nonzero().flatten()
