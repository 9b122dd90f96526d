"""The base CNN of the Keras hyper-parameter slides (Keras' cifar10_cnn example)."""

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.blocks import (
    ActFactory,
    DropFactory,
    NormFactory,
    conv_block,
    dense_block,
    dropout_rates,
)
from cnnlab.options import Rates, Supplied, Width
from cnnlab.registry import register


@register("model", "base_cnn")
class BaseCNN(nn.Module):
    """[conv3x3 same, conv3x3 valid, maxpool 2, dropout] x 2 (32 then 64 filters), dense 512.

    1,250,858 parameters for 3x32x32 and 10 classes without BN, as in the slides' table."""

    def __init__(
        self,
        act: ActFactory,
        norm: NormFactory,
        drop: DropFactory,
        in_channels: Supplied[int] = 3,
        num_classes: Supplied[int] = 10,
        image_size: Supplied[int] = 32,
        dropout: Rates = (0.25, 0.25, 0.5),
        hidden: Width = 512,
    ):
        super().__init__()
        first, second, fc = dropout_rates(dropout, 3, "base_cnn")
        self.features = nn.Sequential(
            conv_block(in_channels, 32, 3, act, norm, padding=1),
            conv_block(32, 32, 3, act, norm),
            nn.MaxPool2d(2),
            drop(first),
            conv_block(32, 64, 3, act, norm, padding=1),
            conv_block(64, 64, 3, act, norm),
            nn.MaxPool2d(2),
            drop(second),
        )
        side = ((image_size - 2) // 2 - 2) // 2  # two valid convs and two pools: 32 -> 6
        if side < 1:
            raise ConfigError(f"base_cnn needs images of at least 10 pixels, got {image_size}")
        self.classifier = nn.Sequential(
            nn.Flatten(),
            dense_block(64 * side * side, hidden, act),
            drop(fc),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
