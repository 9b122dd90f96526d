"""Activation functions, selected with ``activation=NAME``.

Every factory takes the number of channels it acts on first, so that per-channel activations
(PReLU, maxout) can be added with the same call shape as plain ones.
"""

from torch import nn

from cnnlab.registry import register


@register("activation", "relu")
def relu(channels: int) -> nn.Module:
    return nn.ReLU(inplace=True)


@register("activation", "elu")
def elu(channels: int, alpha: float = 1.0) -> nn.Module:
    """ELU, alpha(exp(x) - 1) for x <= 0; seed 002 uses alpha = 1."""
    return nn.ELU(alpha=alpha, inplace=True)


@register("activation", "leaky_relu")
def leaky_relu(channels: int, negative_slope: float = 0.01) -> nn.Module:
    """Leaky ReLU; seed 002 uses slope 0.01, seed 001 0.1."""
    return nn.LeakyReLU(negative_slope, inplace=True)
