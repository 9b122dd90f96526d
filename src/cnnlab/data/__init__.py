"""Data sets chosen by name, and the DataModule that serves them."""

from cnnlab.data import cifar, digits, fake, fashion_mnist, image_folder  # noqa: F401  (registers them)
from cnnlab.data.datamodule import ImageDataModule

__all__ = ["ImageDataModule"]
