"""A network's parts as fine-tuning sees them: its top-level modules, but one holding the output
layer opened into its children, so that the head stands apart (NIN's sits inside ``features``)."""

from torch import nn

from cnnlab.layers.inits import KERNEL_LAYERS


def head_name(net: nn.Module) -> str:
    """The output layer's name: timm's ``get_classifier``, else the last conv or dense layer."""
    if hasattr(net, "get_classifier"):
        classifier = net.get_classifier()
        named = [name for name, module in net.named_modules() if module is classifier and name]
        if named:
            return named[0]
    layers = [name for name, module in net.named_modules() if isinstance(module, KERNEL_LAYERS)]
    if not layers:  # no model here is one; a user's might be
        raise ValueError("the network has no convolution or dense layer to take as its head")
    return layers[-1]


def parts(net: nn.Module) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """(body, head): the parts before the output layer and from it on, by name, in order."""
    head = head_name(net)
    body: dict[str, nn.Module] = {}
    rest: dict[str, nn.Module] = {}

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if head.startswith(f"{full}."):  # holds the output layer: its children are parts
                walk(child, f"{full}.")
            elif rest or full == head:
                rest[full] = child
            else:
                body[full] = child

    walk(net, "")
    return body, rest


def in_parts(key: str, names: dict[str, nn.Module]) -> bool:
    """Whether the state-dict ``key`` (``classifier.3.weight``) belongs to one of ``names``."""
    return any(key.startswith(f"{name}.") for name in names)
