"""Activation functions (``activation=NAME``); each factory takes its channel count first, so
that per-channel (PReLU) and channel-reducing (maxout) ones are called as plain ones are."""

from typing import Annotated, Literal

import torch
from annotated_types import Ge, Le
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from cnnlab.errors import ConfigError
from cnnlab.options import Fraction, Positive, Supplied
from cnnlab.registry import register


def suits(init: str, dropout: type[nn.Module] = nn.Dropout):
    """Record the init and dropout layer an activation works best with."""

    def deco(fn):
        fn.init, fn.dropout = init, dropout
        return fn

    return deco


class Maxout(nn.Module):
    """max over ``pieces`` consecutive channels: (N, k*C, ...) -> (N, C, ...) (Goodfellow 2013)."""

    def __init__(self, pieces: int):
        super().__init__()
        self.expansion = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (-1, self.expansion)).amax(dim=2)


class RandomizedReLU(nn.Module):
    """RReLU as the CNN tricks slides state it: x / a below zero, a ~ U(3, 8) (Xu et al. 2015)."""

    def __init__(self, lower: Positive = 3.0, upper: Positive = 8.0):
        super().__init__()
        if lower > upper:
            raise ConfigError(
                f"activation.lower={lower}, activation.upper={upper}: rrelu needs lower <= upper"
            )
        self.lower, self.upper = lower, upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            a = torch.empty_like(x).uniform_(self.lower, self.upper)
        else:
            a = torch.full_like(x, (self.lower + self.upper) / 2)
        return torch.where(x >= 0, x, x / a)


class ElementwisePReLU(LazyModuleMixin, nn.Module):
    """PReLU with a slope for every element of the feature map (C, H, W), as Keras' PReLU; its
    shape comes from the first input (build_model runs one dry forward for it)."""

    def __init__(self, init: float = 0.25):
        super().__init__()
        self.init = init
        self.weight = UninitializedParameter()

    def initialize_parameters(self, x: torch.Tensor) -> None:
        if self.has_uninitialized_params():
            with torch.no_grad():
                self.weight.materialize(x.shape[1:])
                self.weight.fill_(self.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, self.weight * x)


class Swish(nn.Module):
    """x * sigmoid(beta * x) (the ResNet report); beta = 1 is SiLU."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)


def is_activation(module: nn.Module) -> bool:
    """Whether ``module`` is an activation: one of torch's (also in timm's own layers) or ours."""
    ours = (Maxout, RandomizedReLU, ElementwisePReLU, Swish)
    return isinstance(module, ours) or type(module).__module__ == "torch.nn.modules.activation"


@register("activation", "relu")
def relu(channels: Supplied[int]) -> nn.Module:
    return nn.ReLU(inplace=True)


@register("activation", "leaky_relu")
def leaky_relu(channels: Supplied[int], negative_slope: Fraction = 0.01) -> nn.Module:
    """max(slope * x, x); the NIN lab report uses 0.01, the Keras hyper-parameter slides 0.1."""
    return nn.LeakyReLU(negative_slope, inplace=True)


@register("activation", "prelu")
def prelu(
    channels: Supplied[int],
    init: float = 0.25,
    per: Literal["channel", "layer", "element"] = "channel",
) -> nn.Module:
    """Leaky ReLU with learned slopes (He et al. 2015): per channel (the CNN tricks slides), per
    layer, or per element as Keras' PReLU (the Keras hyper-parameter slides' table)."""
    if per == "element":
        return ElementwisePReLU(init)
    return nn.PReLU(channels if per == "channel" else 1, init=init)


@register("activation", "rrelu")
def rrelu(channels: Supplied[int], lower: Positive = 3.0, upper: Positive = 8.0) -> nn.Module:
    return RandomizedReLU(lower, upper)


@register("activation", "elu")
def elu(channels: Supplied[int], alpha: Positive = 1.0) -> nn.Module:
    """alpha * (exp(x) - 1) below zero; the NIN lab report uses alpha = 1."""
    return nn.ELU(alpha=alpha, inplace=True)


@register("activation", "selu")
@suits(init="lecun", dropout=nn.AlphaDropout)
def selu(channels: Supplied[int]) -> nn.Module:
    """SELU with the 79%→90% slides' constants (PyTorch's): self-normalising only with LeCun init
    and alpha dropout, which it asks for."""
    return nn.SELU()


@register("activation", "maxout")
def maxout(channels: Supplied[int], pieces: Annotated[int, Ge(1), Le(64)] = 2) -> nn.Module:
    return Maxout(pieces)


@register("activation", "swish")
def swish(channels: Supplied[int], beta: Positive = 1.0) -> nn.Module:
    return Swish(beta)


@register("activation", "silu")
def silu(channels: Supplied[int]) -> nn.Module:
    return nn.SiLU(inplace=True)


@register("activation", "relu6")
def relu6(channels: Supplied[int]) -> nn.Module:
    """min(max(0, x), 6) (the ResNet report)."""
    return nn.ReLU6(inplace=True)


@register("activation", "tanh")
@suits(init="xavier")
def tanh(channels: Supplied[int]) -> nn.Module:
    return nn.Tanh()


@register("activation", "sigmoid")
@suits(init="xavier")
def sigmoid(channels: Supplied[int]) -> nn.Module:
    return nn.Sigmoid()
