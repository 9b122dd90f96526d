"""A network's parts as fine-tuning sees them: the head (the output layer and whatever follows
it) and, before it, the body's parts, which can be frozen by name or counted.

The parts are the network's top-level modules, except that a module holding the output layer
is opened up into its children, so that the head stands apart: NIN's last 1x1 convolution sits
inside ``features``, base_cnn's last dense layer inside ``classifier``. Printing the network
(``print(net)``) shows the same names.
"""

from torch import nn

from cnnlab.layers.inits import KERNEL_LAYERS


def head_name(net: nn.Module) -> str:
    """The output layer's name: timm's own answer for its models (``get_classifier``), else the
    last convolution or dense layer, which is the output layer of every cnnlab model."""
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
    """(body, head): the network's parts before its output layer and from it on, each by name,
    in the order the network holds them."""
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
