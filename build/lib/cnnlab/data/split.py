"""A seeded, stratified train/validation split."""

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
