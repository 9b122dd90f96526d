"""Network in Network: the NIN lab report's ConvPool-CNN (Table 1) and the 79%→90% slides' NIN9.

Their last 1x1 convolution gives the logits directly: norm and activation after it, as in the
tables (``final_norm_act=True``), would bound sigmoid's and tanh's logits: a biased study."""

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.blocks import ActFactory, DropFactory, NormFactory, conv_block, dropout_rates
from cnnlab.options import Rates, Supplied
from cnnlab.registry import register


def mlpconv(in_ch: int, widths: Sequence[int], kernel: int, act, norm) -> list[nn.Module]:
    """One k x k convolution followed by 1x1 convolutions (the 'micro network')."""
    layers = [conv_block(in_ch, widths[0], kernel, act, norm, padding=kernel // 2)]
    for before, width in zip(widths, widths[1:], strict=False):
        layers.append(conv_block(before, width, 1, act, norm))
    return layers


@register("model", "nin")
class NIN(nn.Module):
    """Three mlpconv stages, 3x3/2 max-pool and dropout between them, global average pooling.

    966,986 parameters for 10 classes without BN (Table 1's layers, counted in the tests)."""

    name = "nin"

    def __init__(
        self,
        act: ActFactory,
        norm: NormFactory,
        drop: DropFactory,
        in_channels: Supplied[int] = 3,
        num_classes: Supplied[int] = 10,
        dropout: Rates = 0.5,
        final_norm_act: bool = False,
    ):
        super().__init__()
        first, second = dropout_rates(dropout, 2, self.name)
        one, two = self.stages(in_channels, act, norm)
        if final_norm_act:
            scores = conv_block(192, num_classes, 1, act, norm)
        else:
            scores = nn.Conv2d(192, num_classes, 1)
        # padding=1 keeps Keras' 'same' pooling: 32 -> 16 -> 8, the 8x8 global pool of Table 1.
        self.features = nn.Sequential(
            *one,
            nn.MaxPool2d(3, stride=2, padding=1),
            drop(first),
            *two,
            nn.MaxPool2d(3, stride=2, padding=1),
            drop(second),
            *mlpconv(192, (192, 192), 3, act, norm),
            scores,
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def stages(self, in_channels: int, act, norm) -> tuple[list[nn.Module], list[nn.Module]]:
        """The layers before the first pool and before the second."""
        return (
            mlpconv(in_channels, (192, 160, 96), 5, act, norm),
            mlpconv(96, (192, 192, 192), 5, act, norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # (N, num_classes) logits


@register("model", "nin9")
class NIN9(NIN):
    """The 79%→90% slides' final network: NIN with stages of three 3x3 convs, 92 then 192 wide;
    the pools' size is not in the slides (stride 2 is): 3x3 as in NIN."""

    name = "nin9"

    def stages(self, in_channels: int, act, norm) -> tuple[list[nn.Module], list[nn.Module]]:
        def convs(in_ch: int, width: int) -> list[nn.Module]:
            return [conv_block(c, width, 3, act, norm, padding=1) for c in (in_ch, width, width)]

        return convs(in_channels, 92), convs(92, 192)
