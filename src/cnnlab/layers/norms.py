"""Normalisation after each convolution, selected with ``norm=NAME``."""

from torch import nn

from cnnlab.registry import register


@register("norm", "bn")
def batch_norm(channels: int, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)


@register("norm", "none")
def no_norm(channels: int) -> nn.Module:
    return nn.Identity()
