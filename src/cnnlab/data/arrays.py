"""Data sets held in memory as uint8 tensors, and the dataset view the loaders read."""

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


@dataclass
class ImageArrays:
    """A whole data set: uint8 images (N, C, H, W) and int64 labels (N,) for train and test,
    the name of each class (None: the label numbers are the names), and validation images of
    its own where it has them (a ``val/`` folder): the data module then validates on those
    instead of holding out part of the training set."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str] | None = None
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


class ImageDataset(Dataset):
    """uint8 images and their labels, on the host or a device. A DataLoader reads a whole batch
    with one indexing operation (``__getitems__``): no per-image Python, no worker processes."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(indices, device=self.images.device)
        return self.images[rows], self.labels[rows]

    def to(self, device: torch.device) -> "ImageDataset":
        return ImageDataset(self.images.to(device), self.labels.to(device))


def whole_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The DataLoader's collate_fn: ``__getitems__`` already returns the batch."""
    return batch
