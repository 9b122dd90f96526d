"""Layer groups shared by the models."""

from collections.abc import Callable

from torch import nn

ActFactory = Callable[[int], nn.Module]
NormFactory = Callable[[int], nn.Module]


def conv_block(
    in_ch: int, out_ch: int, kernel: int, act: ActFactory, norm: NormFactory, padding: int = 0
) -> nn.Sequential:
    """conv -> norm -> activation, the z = f(BN(Wx + b)) of seed 002.

    The conv keeps its bias even before BN, as the seeds' Keras models do, so parameter counts
    match their tables.
    """
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=padding), norm(out_ch), act(out_ch)
    )
