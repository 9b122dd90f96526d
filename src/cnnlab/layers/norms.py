"""Normalisation after each convolution, selected with ``norm=NAME``."""

import math

from torch import nn

from cnnlab.options import Count, Positive, Probability, Supplied
from cnnlab.registry import register


@register("norm", "bn")
def batch_norm(
    channels: Supplied[int], momentum: Probability = 0.1, eps: Positive = 1e-5
) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)


@register("norm", "group")
def group_norm(channels: Supplied[int], groups: Count = 32, eps: Positive = 1e-5) -> nn.Module:
    """GroupNorm; layers whose width ``groups`` does not divide use the largest group count
    that does (NIN's 10-channel output layer gets 2 groups of 5)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=eps)


@register("norm", "layer")
def layer_norm(channels: Supplied[int], eps: Positive = 1e-5) -> nn.Module:
    """Normalise each image over all its channels and positions (GroupNorm with one group)."""
    return nn.GroupNorm(1, channels, eps=eps)


@register("norm", "none")
def no_norm(channels: Supplied[int]) -> nn.Module:
    return nn.Identity()
