"""Any timm architecture by name, with cnnlab's activation and norm, sized for small images."""

from typing import Literal

import timm
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.blocks import ActFactory, NormFactory, expansion
from cnnlab.options import Fraction, Supplied, shown
from cnnlab.registry import register


def _act_layer(act: ActFactory):
    """timm gives ``act_layer`` no channel count: called with 0, an activation that needs one
    (maxout; a per-channel PReLU, which then has no slope) is refused rather than built wrong."""

    def make(*args, **kwargs) -> nn.Module:
        a = act(0)
        if expansion(a) > 1:
            raise ConfigError("maxout needs to widen the layer before it; timm models cannot")
        if isinstance(a, nn.PReLU) and a.weight.numel() == 0:
            raise ConfigError(
                "timm models do not tell an activation its channel count: use "
                "activation.per=layer or activation.per=element with prelu"
            )
        return a

    return make


def _small_stem(net: nn.Module, arch: str) -> None:
    """Swap the 7x7/2 conv + 3x3/2 max-pool stem for a 3x3/1 conv, so 32x32 inputs reach the
    last stage at 4x4 rather than 1x1 (the usual CIFAR change to ImageNet ResNets)."""
    conv = getattr(net, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(net, "maxpool"):
        raise ConfigError(
            f"model.stem=small needs a ResNet-style stem (conv1 + maxpool); '{arch}' has none: "
            "use model.stem=imagenet"
        )
    net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm's
    net.maxpool = nn.Identity()


@register("model", "timm")
def timm_model(
    act: ActFactory,
    norm: NormFactory,
    arch: str = "resnet18",
    stem: Literal["small", "imagenet"] = "small",
    layers: Literal["cnnlab", "timm"] = "cnnlab",
    in_channels: Supplied[int] = 3,
    num_classes: Supplied[int] = 10,
    dropout: Fraction = 0.0,
    extra: dict | None = None,
) -> nn.Module:
    """A randomly initialised ``timm.create_model(arch)`` (nothing is downloaded).

    ``dropout`` is timm's drop_rate: plain dropout even with SELU."""
    if not timm.is_model(arch):
        raise ConfigError(f"model.arch={arch}: no such timm model; timm.list_models() lists them")
    kwargs = {"num_classes": num_classes, "in_chans": in_channels, "drop_rate": dropout}
    kwargs |= extra or {}
    if layers == "cnnlab":
        # timm also passes device/dtype (and for norms, other options) that cnnlab's take not.
        kwargs |= {"act_layer": _act_layer(act), "norm_layer": lambda c, *_, **__: norm(c)}
    try:
        net = timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as err:
        if extra and not any(name in str(err) for name in ("act_layer", "norm_layer")):
            raise ConfigError(
                f"model.extra={shown(extra)}: timm model '{arch}' does not take it ({err})"
            ) from None
        raise ConfigError(
            f"timm model '{arch}' does not take cnnlab's layers ({err}); set model.layers=timm"
        ) from None
    if stem == "small":
        _small_stem(net, arch)
    return net


# init=auto leaves timm's own initialisation (per architecture: zero-init last BN gammas,
# truncated normals for ViTs, ...) in place; an explicit init= replaces it on conv/dense kernels.
timm_model.init = "default"
