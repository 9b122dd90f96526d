"""Seeded, stratified splits of a training set: one held-out share, or K folds."""

import torch

from cnnlab.errors import ConfigError


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) with ``fraction`` of each class in val, the same for the same seed
    (stratified: a 1% split of CIFAR-10 still holds 50 images of every class)."""
    train, val = [], []
    for idx in _shuffled_classes(labels, seed):
        n_val = round(fraction * len(idx))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def fold_of(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """The fold (0..folds-1) of each image: each class's images, shuffled, dealt out in turn one
    class after another, so that each class and the folds' sizes split evenly (within one)."""
    assigned = torch.empty_like(labels)
    dealt = torch.cat(_shuffled_classes(labels, seed))
    assigned[dealt] = torch.arange(len(dealt)) % folds
    return assigned


def _shuffled_classes(labels: torch.Tensor, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    classes = [(labels == cls).nonzero().flatten() for cls in labels.unique(sorted=True)]
    return [idx[torch.randperm(len(idx), generator=gen)] for idx in classes]


def fold_split(
    labels: torch.Tensor, folds: int, fold: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): validate on fold ``fold`` of ``folds``, train on the others."""
    held = fold_of(labels, folds, seed) == fold
    return (~held).nonzero().flatten(), held.nonzero().flatten()


def held_out(
    labels: torch.Tensor, val_split: float, seed: int, folds: int | None, fold: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): fold ``fold`` of ``folds`` if given, else the ``val_split`` share."""
    if folds:
        if folds > len(labels):  # some folds would be empty
            raise ConfigError(
                f"data.folds={folds} is more than the {len(labels)} training images; "
                "use fewer folds"
            )
        return fold_split(labels, folds, fold, seed)
    train_idx, val_idx = stratified_split(labels, val_split, seed)
    if val_split and not len(val_idx):
        raise ConfigError(
            f"data.val_split={val_split} leaves no validation image "
            f"({len(train_idx)} training images); raise it or set it to 0"
        )
    return train_idx, val_idx


def check_folds(folds: int | None, fold: int | None, val_on_test: bool) -> None:
    if (folds is None) != (fold is None):
        raise ConfigError(
            "data.folds and data.fold go together: data.folds=K data.fold=i (0 <= i < K), "
            "or -m data.folds=K data.fold='range(K)' for all K folds"
        )
    if folds is not None and fold >= folds:
        raise ConfigError(f"data.fold={fold}: data.folds={folds} numbers them 0..{folds - 1}")
    if folds is not None and val_on_test:
        raise ConfigError("data.folds validates on a fold: it cannot go with data.val_on_test")
