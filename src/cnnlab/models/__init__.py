"""Models chosen by name, and the one function that assembles a network from config."""

from collections.abc import Mapping
from typing import Any

import timm
from torch import nn

from cnnlab import registry
from cnnlab.errors import ConfigError
from cnnlab.models import base_cnn, nin, resnet, seed000, timm_models  # noqa: F401

# What build_model passes every model; the rest of a model's arguments are its config options.
MODEL_INPUTS = ("act", "norm", "drop", "in_channels", "num_classes", "image_size")


def build_model(
    model: Mapping[str, Any],
    activation: Mapping[str, Any],
    norm: Mapping[str, Any],
    init: Mapping[str, Any],
    in_channels: int = 3,
    num_classes: int = 10,
    image_size: int = 32,
) -> nn.Module:
    """Build ``model`` with the chosen activation and norm in every block, then initialise it.

    Each mapping is a config node such as ``{name: elu, alpha: 1.0}``. ``init: {name: auto}``
    takes the init the activation asks for (He for the ReLU family, LeCun for SELU, Xavier for
    tanh and sigmoid); dropout layers are the kind the activation asks for (alpha for SELU).
    """
    act = registry.factory("activation", activation, supplied=("channels",))
    chosen = registry.lookup("activation", activation["name"])
    if init["name"] == "auto":
        init = {"name": getattr(chosen, "init", "he")}
    initialise = registry.factory("init", init)()
    make = _model_factory(model)
    net = make(
        act=act,
        norm=registry.factory("norm", norm, supplied=("channels",)),
        drop=getattr(chosen, "dropout", nn.Dropout),
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
    )
    net.apply(initialise)
    return net


def _model_factory(model: Mapping[str, Any]):
    try:
        return registry.factory("model", model, supplied=MODEL_INPUTS)
    except ConfigError as err:
        if timm.is_model(model["name"]):  # model=timm model.name=resnet18 reads naturally
            hint = f"for timm's, use model=timm model.arch={model['name']}"
            raise ConfigError(f"{err}; {hint}") from None
        raise


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters (BN running statistics are buffers and do not count)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
