"""A basic-block ResNet (the ResNet report): blocks and widths per stage, five block orders."""

from typing import Annotated, Literal

import torch
from annotated_types import Ge, Le, MinLen
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.blocks import ActFactory, DropFactory, NormFactory, expansion
from cnnlab.options import Fraction, Supplied, Width, shown
from cnnlab.registry import register

# The residual branch and what follows the addition, for each block order of He et al. 2016,
# "Identity Mappings in Deep Residual Networks", Fig. 4 (the ResNet report's §2.1.6 compares them).
Order = Literal["original", "bn_after_add", "relu_before_add", "relu_preact", "preact"]
ORDERS = {
    "original": ("conv bn act conv bn", "act"),
    "bn_after_add": ("conv bn act conv", "bn act"),
    "relu_before_add": ("conv bn act conv bn act", ""),
    "relu_preact": ("act conv bn act conv bn", ""),
    "preact": ("bn act conv bn act conv", ""),
}


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a shortcut: identity, or 1x1 conv + norm where the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, act, norm, order: str):
        super().__init__()
        branch, after = ORDERS[order]
        self.branch = _layers(branch.split(), in_ch, out_ch, stride, act, norm)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), norm(out_ch)
            )
        self.after = _layers(after.split(), out_ch, out_ch, 1, act, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.branch(x) + self.shortcut(x))


def _layers(tokens: list[str], in_ch: int, out_ch: int, stride: int, act, norm) -> nn.Sequential:
    """'conv bn act ...' in order, only the first conv striding; a conv widens for a maxout after
    it, so a maxout with no conv before it (pre-activation, after the addition) is refused."""
    layers, channels, pending = [], in_ch, None
    for i, token in enumerate(tokens):
        if token == "conv":
            rest = tokens[i + 1 :]
            upto = rest.index("conv") if "conv" in rest else len(rest)
            pending = act(out_ch) if "act" in rest[:upto] else None
            width = out_ch * (expansion(pending) if pending is not None else 1)
            first = not any(isinstance(m, nn.Conv2d) for m in layers)
            layers.append(nn.Conv2d(channels, width, 3, stride if first else 1, 1, bias=False))
            channels = width
        elif token == "bn":
            layers.append(norm(channels))
        else:
            a = pending if pending is not None else act(channels)
            pending = None
            if expansion(a) > 1 and not any(isinstance(m, nn.Conv2d) for m in layers):
                raise ConfigError(
                    "maxout needs a convolution right before it; with resnet use "
                    "model.order=relu_before_add"
                )
            layers.append(a)
            channels //= expansion(a)
    return nn.Sequential(*layers)


@register("model", "resnet")
class ResNet(nn.Module):
    """3x3 stem, stages of basic blocks (stride 2 from the second stage), average pool, dense.

    ``blocks`` and ``channels`` per stage; their defaults are the ResNet report's ResNet24."""

    def __init__(
        self,
        act: ActFactory,
        norm: NormFactory,
        drop: DropFactory,
        blocks: Annotated[list[Annotated[int, Ge(1), Le(64)]], MinLen(1)] = (3, 3, 2, 3),
        channels: Annotated[list[Width], MinLen(1)] = (64, 128, 128, 256),
        order: Order = "original",
        in_channels: Supplied[int] = 3,
        num_classes: Supplied[int] = 10,
        dropout: Fraction = 0.0,
    ):
        super().__init__()
        if len(blocks) != len(channels):
            raise ConfigError(
                f"model.channels={shown(channels)}: resnet needs one channel count per stage "
                f"of model.blocks={shown(blocks)}"
            )
        # Pre-activation blocks normalise their own input, so their stem is a bare conv.
        preact = order.endswith("preact")
        tokens = ["conv"] if preact else ["conv", "bn", "act"]
        stem = _layers(tokens, in_channels, channels[0], 1, act, norm)
        stages, width = [], channels[0]
        for i, (n, out) in enumerate(zip(blocks, channels, strict=True)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(BasicBlock(width, out, stride, act, norm, order))
                width = out
        # Pre-activation stacks end on a convolution: normalise and activate before pooling.
        tail = [norm(width), act(width)] if preact else []
        self.features = nn.Sequential(stem, *stages, *tail)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), drop(dropout), nn.Linear(width, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
