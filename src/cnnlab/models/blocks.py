"""Layer groups shared by the models."""

from collections.abc import Callable, Sequence

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.options import Supplied

# What build_model supplies a model (never options of its config node).
ActFactory = Supplied[Callable[[int], nn.Module]]
NormFactory = Supplied[Callable[[int], nn.Module]]
DropFactory = Supplied[Callable[[float], nn.Module]]


def expansion(act: nn.Module) -> int:
    """How many inputs per output channel an activation wants: k for maxout, else 1."""
    return getattr(act, "expansion", 1)


def conv_block(
    in_ch: int, out_ch: int, kernel: int, act: ActFactory, norm: NormFactory, padding: int = 0
) -> nn.Sequential:
    """conv -> norm -> activation, the z = f(BN(Wx + b)) of the NIN lab report.

    The conv keeps its bias even before BN, as the studies' Keras models do: counts match."""
    a = act(out_ch)
    width = out_ch * expansion(a)
    return nn.Sequential(nn.Conv2d(in_ch, width, kernel, padding=padding), norm(width), a)


def dense_block(in_features: int, out_features: int, act: ActFactory) -> nn.Sequential:
    """linear -> activation, widened for maxout as conv_block is."""
    a = act(out_features)
    return nn.Sequential(nn.Linear(in_features, out_features * expansion(a)), a)


def dropout_rates(dropout: float | Sequence[float], count: int, model: str) -> list[float]:
    """One rate per dropout layer, from one rate or a list, one per depth (differential dropout)."""
    rates = [dropout] * count if isinstance(dropout, int | float) else list(dropout)
    if len(rates) != count:
        raise ConfigError(
            f"{model} has {count} dropout layers; model.dropout gave {len(rates)} rates"
        )
    return rates
