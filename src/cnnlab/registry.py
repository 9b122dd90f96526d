"""The two ways a config names what to build (docs/development.md): cnnlab's components by name,
the kind being the group's (``activation=elu`` finds ``@register("activation", "elu")``), and
other libraries' objects by the ``_target_`` of their node (``build``)."""

import importlib
import inspect
import pkgutil
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from cnnlab.errors import ConfigError, first_line
from cnnlab.options import check_options

_REGISTRY: dict[str, dict[str, Callable]] = defaultdict(dict)
# Where components are registered; imported at the first lookup (--help needs no torch).
PACKAGES = ("cnnlab.layers", "cnnlab.models", "cnnlab.data", "cnnlab.training")
_loaded = False


def register(kind: str, name: str):
    """Decorator that files ``fn`` under ``kind``/``name``; a second use of a name is an error."""

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} '{name}' is registered twice")
        _REGISTRY[kind][name] = fn
        return fn

    return deco


def _load_components() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        for module in pkgutil.walk_packages(path, f"{package}."):
            importlib.import_module(module.name)


def names(kind: str) -> list[str]:
    """The registered names of one kind, sorted."""
    _load_components()
    return sorted(_REGISTRY[kind])


def lookup(kind: str, name: str) -> Callable:
    """The factory registered as ``kind``/``name``, or a ConfigError listing the choices."""
    _load_components()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise ConfigError(
            f"unknown {kind} '{name}'; choose from: {', '.join(names(kind))}"
        ) from None


def create(kind: str, name: str, *args, **kwargs) -> Any:
    """Build one component: ``create("activation", "elu", 64, alpha=1.0)``."""
    return lookup(kind, name)(*args, **kwargs)


def factory(kind: str, spec: Mapping[str, Any], where: str | None = None) -> Callable:
    """A config node ``{name: elu, alpha: 1.0}`` as a factory with its options bound, checked now:
    a mistake fails at start-up in one line rather than deep inside a model. ``where`` is the
    node's place in the config, for the messages (``data.dataset``)."""
    options = {k: v for k, v in spec.items() if k != "name"}
    fn = lookup(kind, spec["name"])
    check_options(fn, options, where or kind, name=spec["name"])
    return partial(fn, **options)


def build(config: Any, *args: Any, where: str | None = None, **kwargs: Any) -> Any:
    """``config``'s object (a node with a ``_target_``), given plain values: Hydra's default hands
    on OmegaConf containers, which reach checkpoints (Adam's ``betas``) that
    ``torch.load(weights_only=True)`` refuses. With ``where``, the node's place in the config,
    what the class refuses when built is one ConfigError line naming that place."""
    if where is None:
        return instantiate(config, *args, _convert_="all", **kwargs)
    # Here, not above: the config's checks import this module before torch is needed (--help).
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


def supply(fn: Callable, **inputs: Any) -> Any:
    """Call ``fn`` with those of ``inputs`` its signature takes: what the code supplies a
    component (a model's activation and sizes, an init's model), each taking what it uses."""
    takes = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in inputs.items() if k in takes})
