"""Weight initialisation (``init=NAME``): each factory returns a function for ``model.apply`` that
sets conv and linear weights and zeroes their biases; everything else keeps PyTorch's."""

from collections.abc import Callable
from typing import Literal

from torch import nn

from cnnlab.options import Positive, Supplied
from cnnlab.registry import create, register

Distribution = Literal["uniform", "normal"]
Init = Callable[[nn.Module], None]  # for model.apply

# The layers whose kernels inits and regularisers act on (timm's conv variants subclass these).
KERNEL_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _for_weights(set_weight: Callable) -> Init:
    def apply(module: nn.Module) -> None:
        if isinstance(module, KERNEL_LAYERS):
            set_weight(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    return apply


@register("init", "auto")
def auto(model: Supplied[Callable], activation: Supplied[Callable]) -> Init:
    """The ``init`` the model asks for (timm's keep their own), else the activation's, else He."""
    return create("init", getattr(model, "init", None) or getattr(activation, "init", "he"))


@register("init", "default")
def default() -> Init:
    """PyTorch's own (Kaiming-uniform with a=sqrt(5)); touches nothing."""
    return lambda module: None


@register("init", "xavier")
def xavier(distribution: Distribution = "uniform", gain: Positive = 1.0) -> Init:
    """Glorot: variance 2 / (fan_in + fan_out), uniform (Keras' default) or normal."""
    fn = nn.init.xavier_uniform_ if distribution == "uniform" else nn.init.xavier_normal_
    return _for_weights(lambda w: fn(w, gain=gain))


@register("init", "he")
def he(
    distribution: Distribution = "normal",
    mode: Literal["fan_in", "fan_out"] = "fan_in",
    nonlinearity: Literal["relu", "leaky_relu", "linear", "tanh", "sigmoid", "selu"] = "relu",
) -> Init:
    """He et al.: normal with std sqrt(2 / n), n = k*k*c (fan_in), as in the NIN lab report."""
    fn = nn.init.kaiming_uniform_ if distribution == "uniform" else nn.init.kaiming_normal_
    return _for_weights(lambda w: fn(w, mode=mode, nonlinearity=nonlinearity))


@register("init", "lecun")
def lecun(distribution: Distribution = "normal") -> Init:
    """LeCun: variance 1 / fan_in, what SELU's self-normalisation assumes."""
    return he(distribution, nonlinearity="linear")


@register("init", "small_normal")
def small_normal(std: Positive = 0.001) -> Init:
    """0.001 * N(0, 1), as in the CNN tricks slides (it shrinks the signal in deep nets)."""
    return _for_weights(lambda w: nn.init.normal_(w, 0.0, std))
