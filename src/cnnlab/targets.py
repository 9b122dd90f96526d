"""Objects from ``_target_`` configs (optimizers, schedules, callbacks, loggers, the Trainer)."""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from cnnlab.errors import ConfigError


def build(config: Any, *args: Any, where: str | None = None, **kwargs: Any) -> Any:
    """``config``'s object, given plain Python values. Hydra's own default hands lists and dicts
    on as OmegaConf containers, which then reach checkpoints (Adam's ``betas`` in the optimizer's
    state) that ``torch.load(weights_only=True)`` refuses to read.

    ``where`` is the node's place in the config (``trainer``, ``callbacks.early_stopping``):
    what the class itself refuses when it is built (an option the declarations leave to it, a
    combination of values) is then one ConfigError line naming that place.
    """
    if where is None:
        return instantiate(config, *args, _convert_="all", **kwargs)
    # Here, not above: cnnlab.validate imports this module before torch is needed (--help).
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return instantiate(config, *args, _convert_="all", **kwargs)
    except (InstantiationException, MisconfigurationException, TypeError, ValueError) as err:
        cause = err  # a nested node's failure comes wrapped once per level: the innermost
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        where, target = _failing(config, where)
        raise ConfigError(f"{where} ({target}) cannot be built: {first_line(cause)}") from None


def _failing(config: Any, where: str) -> tuple[str, str]:
    """The place and target of the innermost node of ``config`` that cannot be built on its
    own (``augment.transforms.all.transforms.3``), else ``config``'s own."""
    nested = [(place, node) for place, node in target_nodes(config, where) if place != where]
    for place, node in sorted(nested, key=lambda n: -n[0].count(".")):
        try:
            instantiate(node, _convert_="all")
        except Exception:
            return place, str(node["_target_"])
    return where, str(config.get("_target_", "?")) if isinstance(config, Mapping) else "?"


def first_line(error: BaseException) -> str:
    """An error's message, its first line only; its type where it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def target_nodes(node: Any, where: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every mapping with a ``_target_`` in ``node``, with its place (``callbacks.lr_monitor``,
    ``augment.transforms.all.transforms.2``); Hydra's own settings are Hydra's to check."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield where, node
        for key, value in node.items():
            if where or key != "hydra":
                yield from target_nodes(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, Sequence) and not isinstance(node, str):
        for i, value in enumerate(node):
            yield from target_nodes(value, f"{where}.{i}")
