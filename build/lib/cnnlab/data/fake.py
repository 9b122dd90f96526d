"""Random images of any shape for smoke tests and benchmarks: nothing to learn or fetch."""

import torch

from cnnlab.data.arrays import ImageArrays
from cnnlab.registry import register


@register("data", "fake")
def fake(
    train_size: int = 512,
    test_size: int = 128,
    in_channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
    seed: int = 0,
) -> ImageArrays:
    gen = torch.Generator().manual_seed(seed)

    def images(n: int) -> torch.Tensor:
        return torch.randint(
            0, 256, (n, in_channels, image_size, image_size), generator=gen, dtype=torch.uint8
        )

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, num_classes, (n,), generator=gen)

    return ImageArrays(images(train_size), labels(train_size), images(test_size), labels(test_size))
