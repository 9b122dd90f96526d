"""The one function that assembles a network from config, whichever model it names."""

from collections.abc import Mapping
from typing import Any

import timm
import torch
from torch import nn

from cnnlab import registry
from cnnlab.errors import ConfigError, first_line
from cnnlab.models.pretrained import load_pretrained
from cnnlab.options import Supplied, parameters, shown


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

    ``layout`` options and the init's ``checkpoint`` (the run loads it) are not the components'."""
    stored = {k: model[k] for k in parameters(layout) if k in model}
    model = {k: v for k, v in model.items() if k not in stored}
    init = {k: v for k, v in init.items() if k not in parameters(load_pretrained)}
    chosen = registry.lookup("activation", activation["name"])
    make = _model_factory(model)
    initialise = registry.supply(
        registry.factory("init", init),
        model=registry.lookup("model", model["name"]),
        activation=chosen,
    )
    try:  # a size or an option value the model cannot take: say so now, not in the first step
        net = registry.supply(
            make,
            act=registry.factory("activation", activation),
            norm=registry.factory("norm", norm),
            drop=getattr(chosen, "dropout", nn.Dropout),
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
        )
        _dry_run(net, in_channels, image_size)
    except (TypeError, ValueError, RuntimeError) as err:
        shape = f"{in_channels}x{image_size}x{image_size}"
        chosen = [f"model.{k}={shown(v)}" for k, v in model.items() if k != "name"]
        options = f" ({', '.join(chosen)})" if chosen else ""
        raise ConfigError(
            f"model={model['name']}{options} cannot be built for {shape} images: {first_line(err)}"
        ) from None
    net.apply(initialise)
    return layout(net, **stored)


def layout_of(model: Mapping[str, Any]) -> dict[str, Any]:
    """The model node's ``layout`` options, each at the declaration's default where unset."""
    return {name: model.get(name, p.default) for name, p in parameters(layout).items()}


def layout(net: Supplied[nn.Module], channels_last: bool = False) -> nn.Module:
    """``model.channels_last``: NHWC weights, which GPU convolutions (bf16, fp16) run fastest in."""
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _dry_run(net: nn.Module, in_channels: int, image_size: int) -> None:
    """One forward pass of a blank image: it fails here if the image is too small for the
    model's pools, and gives lazy layers (PReLU with a slope per element) their shapes."""
    mode = net.training
    with torch.no_grad():
        net.eval()(torch.zeros(1, in_channels, image_size, image_size))
    net.train(mode)
    # A layer of no weights passes a blank image (zeros in, its bias out) but learns nothing.
    empty = next((name for name, p in net.named_parameters() if p.numel() == 0), None)
    if empty is not None:
        raise ValueError(f"its layer {empty} would have no weights (the image shrinks to nothing)")


def _model_factory(model: Mapping[str, Any]):
    try:
        return registry.factory("model", model)
    except ConfigError as err:
        if timm.is_model(model["name"]):  # model=timm model.name=resnet18 reads naturally
            hint = f"for timm's, use model=timm model.arch={model['name']}"
            raise ConfigError(f"{err}; {hint}") from None
        raise


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters (BN running statistics are buffers and do not count)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
