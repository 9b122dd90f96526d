"""One registry for every swappable component, keyed by kind and name.

The kind is the config group's name (``activation``, ``norm``, ``init``, ``model``, ``data``), so
``activation=elu`` on the command line finds ``@register("activation", "elu")``.
"""

from collections import defaultdict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.options import check_options

_REGISTRY: dict[str, dict[str, Callable]] = defaultdict(dict)


def register(kind: str, name: str):
    """Decorator that files ``fn`` under ``kind``/``name``; a second use of a name is an error."""

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} '{name}' is registered twice")
        _REGISTRY[kind][name] = fn
        return fn

    return deco


def _load_components() -> None:
    """The component packages register themselves when imported. They are imported at the first
    lookup, not with cnnlab: --help and a mistyped option then answer without loading torch."""
    import cnnlab.data  # noqa: F401
    import cnnlab.layers  # noqa: F401
    import cnnlab.models  # noqa: F401


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


def factory(
    kind: str, spec: Mapping[str, Any], supplied: tuple[str, ...] = (), where: str | None = None
) -> Callable:
    """Turn a config node ``{name: elu, alpha: 1.0}`` into a factory with its options bound.

    ``supplied`` names the arguments the caller passes itself (a model's activation, an
    activation's channel count); the config may not set them. Checks the name, the option
    names and their values (against the function's annotations) now, so a mistake fails at
    start-up in one line rather than deep inside a model. ``where`` is the node's place in
    the config, for the messages (``data.dataset``); the kind by default.
    """
    options = {k: v for k, v in spec.items() if k != "name"}
    fn = lookup(kind, spec["name"])
    check_options(fn, options, where or kind, supplied, name=spec["name"])
    return partial(fn, **options)
