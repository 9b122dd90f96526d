"""The plain CNNs of the 79%→90% slides: the first (one conv), and 6 convs + 2 dense layers."""

from typing import Annotated

import torch
from annotated_types import MinLen
from torch import nn

from cnnlab.models.blocks import (
    ActFactory,
    DropFactory,
    NormFactory,
    conv_block,
    dense_block,
    dropout_rates,
)
from cnnlab.options import Count, Rates, Supplied, Width
from cnnlab.registry import register


@register("model", "cnn_shallow")
class ShallowCNN(nn.Module):
    """conv 3x3 -> max-pool (stride 1, no padding) -> dropout -> dense -> dropout -> dense.

    Defaults: the table's first rows. ``dropout`` is the drop rate (the slides' keep 0.3 = 0.7)."""

    def __init__(
        self,
        act: ActFactory,
        norm: NormFactory,
        drop: DropFactory,
        in_channels: Supplied[int] = 3,
        num_classes: Supplied[int] = 10,
        image_size: Supplied[int] = 32,
        filters: Width = 20,
        pool: Count = 8,
        hidden: Width = 500,
        dropout: Rates = 0.7,
    ):
        super().__init__()
        conv_drop, fc_drop = dropout_rates(dropout, 2, "cnn_shallow")
        side = image_size - pool + 1
        self.net = nn.Sequential(
            conv_block(in_channels, filters, 3, act, norm, padding=1),
            nn.MaxPool2d(pool, stride=1),
            drop(conv_drop),
            nn.Flatten(),
            dense_block(filters * side * side, hidden, act),
            drop(fc_drop),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register("model", "cnn_deep")
class DeepCNN(nn.Module):
    """Pairs of 3x3 convs, each then max-pool and dropout; dense layers, dropout, output layer;
    ``pool_stride`` 1 is the table's setting."""

    def __init__(
        self,
        act: ActFactory,
        norm: NormFactory,
        drop: DropFactory,
        in_channels: Supplied[int] = 3,
        num_classes: Supplied[int] = 10,
        image_size: Supplied[int] = 32,
        filters: Annotated[list[Width], MinLen(1)] = (24, 24, 24),
        pool: Count = 2,
        pool_stride: Count = 1,
        hidden: list[Width] = (512, 512),
        dropout: Rates = 0.7,
    ):
        super().__init__()
        rates = dropout_rates(dropout, len(filters) + 1, "cnn_deep")
        layers, channels, side = [], in_channels, image_size
        for width, rate in zip(filters, rates[:-1], strict=True):
            layers += [
                conv_block(channels, width, 3, act, norm, padding=1),
                conv_block(width, width, 3, act, norm, padding=1),
                nn.MaxPool2d(pool, stride=pool_stride),
                drop(rate),
            ]
            channels, side = width, (side - pool) // pool_stride + 1
        self.features = nn.Sequential(*layers)
        dense, width = [], channels * side * side
        for units in hidden:
            dense.append(dense_block(width, units, act))
            width = units
        self.classifier = nn.Sequential(
            nn.Flatten(), *dense, drop(rates[-1]), nn.Linear(width, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
