"""Network in Network, the ConvPool-CNN of seed 002, Table 1."""

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.blocks import ActFactory, DropFactory, NormFactory, conv_block, dropout_rates
from cnnlab.registry import register


def mlpconv(in_ch: int, widths: tuple[int, int, int], kernel: int, act, norm) -> list[nn.Module]:
    """One k x k convolution followed by two 1x1 convolutions (the 'micro network')."""
    first, second, third = widths
    return [
        conv_block(in_ch, first, kernel, act, norm, padding=kernel // 2),
        conv_block(first, second, 1, act, norm),
        conv_block(second, third, 1, act, norm),
    ]


class NIN(nn.Module):
    """Three mlpconv stages, 3x3/2 max-pool and dropout between them, global average pooling.

    The last 1x1 convolution has one channel per class, so the network has no dense layer:
    966,986 parameters for 10 classes without BN (seed 002 quotes about 0.97M).
    """

    def __init__(
        self,
        act: ActFactory,
        norm: NormFactory,
        drop: DropFactory,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        dropout: float | Sequence[float] = 0.5,
    ):
        super().__init__()
        first, second = dropout_rates(dropout, 2, "nin")
        # padding=1 keeps Keras' 'same' pooling: 32 -> 16 -> 8, the 8x8 global pool of Table 1.
        self.features = nn.Sequential(
            *mlpconv(in_channels, (192, 160, 96), 5, act, norm),
            nn.MaxPool2d(3, stride=2, padding=1),
            drop(first),
            *mlpconv(96, (192, 192, 192), 5, act, norm),
            nn.MaxPool2d(3, stride=2, padding=1),
            drop(second),
            *mlpconv(192, (192, 192, num_classes), 3, act, norm),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # (N, num_classes) logits


register("model", "nin")(NIN)
