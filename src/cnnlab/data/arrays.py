"""Data sets held in memory as uint8 tensors, and the dataset view the loaders read."""

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


@dataclass
class ImageArrays:
    """A whole data set: uint8 images (N, C, H, W), int64 labels (N,), class names (None: the
    label numbers), and its own validation images if it has them (used instead of a split)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str] | None = None
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


class ImageDataset(Dataset):
    """uint8 images and labels, on any device; ``__getitems__`` reads a batch in one indexing."""

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
