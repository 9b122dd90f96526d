"""Options declared once, as annotated parameters (``lr: Positive``; where each kind is declared:
docs/development.md), and checked with pydantic: a value that does not fit is one ConfigError
line made from the annotation, ``optimizer.lr=-1: expected a number > 0``."""

import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Len, Lt, MaxLen, MinLen
from omegaconf import DictConfig, ListConfig, OmegaConf
from pydantic import (
    AfterValidator,
    ConfigDict,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
)

from cnnlab.errors import ConfigError

T = TypeVar("T")
# Strict: a string is not a number, 1 is not true, 2.5 is not an integer (an integer is a
# number); and nan or inf is never a setting.
STRICT = ConfigDict(strict=True, allow_inf_nan=False)

Positive = Annotated[float, Gt(0)]
NonNegative = Annotated[float, Ge(0)]
Fraction = Annotated[float, Ge(0), Lt(1)]  # [0, 1): a share that cannot be all
Probability = Annotated[float, Ge(0), Le(1)]
Count = Annotated[int, Ge(1)]
Natural = Annotated[int, Ge(0)]
# Widths and sizes: above this a model does not fit a GPU, and a typo (10**9) would hang the
# build allocating it.
Width = Annotated[int, Ge(1), Le(16384)]
Images = Annotated[int, Ge(1), Le(4096)]  # images a figure or a probe draws
Rates = Fraction | list[Fraction]  # one dropout rate everywhere, or one per dropout layer


class Supplied:
    """``channels: Supplied[int]``: an argument the code passes itself (an activation's channel
    count), never an option: the config may not set it, and help does not list it."""

    def __class_getitem__(cls, kind: Any) -> Any:
        return Annotated[kind, cls]


def _has_target(node: Mapping[str, Any]) -> Mapping[str, Any]:
    if "_target_" not in node:
        raise ValueError("no _target_")
    return node


# A node that names the class it builds (``{_target_: torch.optim.lr_scheduler.StepLR, ...}``).
Target = Annotated[dict[str, Any], AfterValidator(_has_target)]

# What the config system adds to a node; never an option.
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def check_options(
    declaration: Callable,
    options: Mapping[str, Any],
    where: str,
    supplied: Sequence[str] = (),
    name: str | None = None,
) -> None:
    """A one-line ConfigError for the first option of the node at ``where`` that ``declaration``
    does not take or refuses; ``supplied`` are passed by the code, and may not be set."""
    declared = parameters(declaration, supplied)
    open_ended = any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(declaration).parameters.values()
    )
    unknown = [k for k in options if k not in declared and k not in HYDRA_KEYS and k != "name"]
    if unknown and not open_ended:
        takes = ", ".join(declared) or "no options"
        what = f"{where} '{name}'" if name else where
        raise ConfigError(f"{what} has no option {', '.join(unknown)}; it takes: {takes}")
    for key, value in options.items():
        if key in declared and not _own_node(value):
            check_value(f"{where}.{key}" if where else key, value, declared[key].annotation)


def read(declaration: type[T], node: Mapping[str, Any] | None, where: str) -> T:
    """``declaration(**node)``: the typed object a consumer reads its config node as, the node
    first checked against it (a wrong option or value is one ConfigError line)."""
    options = plain(node) or {}
    check_options(declaration, options, where)
    return declaration(**options)


def check_value(key: str, value: Any, annotation: Any) -> None:
    adapter = _adapter(annotation)
    if adapter is None:  # not a config type (a module, a tensor): the code supplies it
        return
    try:
        adapter.validate_python(plain(value))
    except ValidationError:
        raise ConfigError(f"{key}={shown(value)}: expected {describe(annotation)}") from None


def parameters(declaration: Callable, supplied: Sequence[str] = ()) -> dict[str, inspect.Parameter]:
    """The options ``declaration`` takes, by name, with their annotations resolved: not those
    ``supplied`` nor those declared ``Supplied``."""
    target = declaration.__init__ if inspect.isclass(declaration) else declaration
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except (NameError, TypeError):  # a library's annotations that do not resolve here
        hints = {}
    return {
        name: p.replace(annotation=hints.get(name, p.annotation))
        for name, p in inspect.signature(declaration).parameters.items()
        if name not in supplied
        and name != "self"
        and not is_supplied(hints.get(name))
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def is_supplied(annotation: Any) -> bool:
    return get_origin(annotation) is Annotated and Supplied in get_args(annotation)[1:]


def describe(annotation: Any) -> str:
    """What ``annotation`` accepts, in words: ``a number in [0, 1)``, ``an integer or null``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _bounded(describe(args[0]), args[1:])
    if origin in (Union, types.UnionType):
        kinds = [describe(a) for a in args if a is not type(None)]
        kinds += ["null"] if type(None) in args else []
        return ", ".join(kinds[:-1]) + " or " + kinds[-1] if len(kinds) > 1 else kinds[0]
    if origin is Literal:
        words = list(dict.fromkeys(shown(a) for a in args))  # 32 and "32" read the same
        return words[0] if len(words) == 1 else "one of " + ", ".join(words)
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {_plural(describe(args[0]))}"
        return f"a list of {_plural(describe(args[0]))}" if args else "a list"
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return "a mapping"
    if annotation in (Any, inspect.Parameter.empty):
        return "anything"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return words.get(annotation, getattr(annotation, "__name__", str(annotation)))


def shown(value: Any) -> str:
    """A value as one writes it on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, DictConfig | ListConfig):
        return shown(OmegaConf.to_container(value, resolve=True))
    if isinstance(value, list | tuple):
        return "[" + ",".join(shown(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{shown(v)}" for k, v in value.items()) + "}"
    return str(value)


@cache
def _adapter(annotation: Any) -> TypeAdapter | None:
    if not _settable(annotation):
        return None
    try:
        return TypeAdapter(annotation, config=STRICT)
    except (PydanticSchemaGenerationError, TypeError):
        return None


def _settable(annotation: Any) -> bool:
    """Whether a config can hold a value of ``annotation``: made of plain values, lists and
    mappings only (not a module, a tensor, a callable: those the code passes itself)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _settable(args[0])
    if origin is Literal:
        return True
    if origin in (Union, types.UnionType, list, tuple, Sequence, dict, Mapping):
        return all(_settable(a) for a in args if a is not Ellipsis)
    return annotation in (bool, int, float, str, type(None), list, tuple, dict, Mapping, Any)


def plain(value: Any) -> Any:
    """A config node as plain lists and dicts (pydantic's strict mode, checkpoints and the
    objects built from a config take nothing else), resolved."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def _own_node(value: Any) -> bool:
    """A nested ``_target_`` node: its own declaration checks it."""
    return isinstance(value, Mapping) and "_target_" in value


def _bounded(kind: str, constraints: tuple) -> str:
    low = high = size = ""
    for c in constraints:
        if isinstance(c, AfterValidator) and c.func is _has_target:
            kind = "a mapping with a _target_"
        elif isinstance(c, Gt | Ge):
            low = ("> " if isinstance(c, Gt) else ">= ") + _number(
                c.gt if isinstance(c, Gt) else c.ge
            )
        elif isinstance(c, Lt | Le):
            high = ("< " if isinstance(c, Lt) else "<= ") + _number(
                c.lt if isinstance(c, Lt) else c.le
            )
        elif isinstance(c, Len) and c.min_length == c.max_length:
            size = f"{c.min_length}"
        elif isinstance(c, MinLen | Len):
            size = f"at least {c.min_length}"
        elif isinstance(c, MaxLen):
            size = f"at most {c.max_length}"
    if size and kind.startswith("a list of "):
        kind = f"a list of {size} {kind.removeprefix('a list of ')}"
    if low and high:
        left = "(" if low.startswith("> ") else "["
        right = ")" if high.startswith("< ") else "]"
        return f"{kind} in {left}{low.split()[-1]}, {high.split()[-1]}{right}"
    return " ".join(part for part in (kind, low, high) if part)


def _number(value: float) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return f"{value:g}"


def _plural(kind: str) -> str:
    for article in ("an ", "a "):
        if kind.startswith(article):
            first, _, rest = kind.removeprefix(article).partition(" ")
            return f"{first}s {rest}".strip()
    return kind
