"""Data sets held in memory as uint8 tensors, and the dataset view the loaders read."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


@dataclass
class ImageArrays:
    """A whole data set: uint8 images (N, C, H, W) and int64 labels (N,) for train and test."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


class ImageDataset(Dataset):
    """Images by index, each passed through ``transform`` (a torchvision v2 pipeline)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]
