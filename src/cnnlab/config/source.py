"""Declarations read from the source files, without importing them: ``--help GROUP`` answers in
a second, where importing torch alone takes several. A test holds them to the imported objects;
a name from a library not imported here (torch's ``nn.Module``) becomes ``Opaque``, a type no
config can set, as the real one is."""

import ast
import importlib
import inspect
from functools import cache, cached_property
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]  # src/cnnlab
# Imported for real where a declaration uses their names: light, and what annotations are made of.
LIGHT = ("typing", "collections.abc", "annotated_types", "pathlib", "cnnlab.options")


class _Unknown(type):
    def __getattr__(cls, name: str) -> type:  # nn.Module, torch.Tensor: as unknown
        return cls

    def __getitem__(cls, item: Any) -> type:
        return cls

    def __iter__(cls):  # tuple(Opaque) would never end: __getitem__ answers every index
        raise TypeError("an opaque name cannot be iterated")


class Opaque(metaclass=_Unknown):
    """A name from a module not imported here (torch's, Lightning's): no config sets one."""


class Declared:
    """A declaration read from source, which ``inspect.signature`` and ``get_type_hints`` read."""

    def __init__(self, qualname: str, parameters: list[inspect.Parameter]):
        self.__qualname__ = self.__name__ = qualname
        self.__signature__ = inspect.Signature(parameters)
        self.__annotations__ = {p.name: p.annotation for p in parameters}

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{self.__qualname__} was read from its source: it cannot be called")


def declaration(dotted: str) -> Declared | None:
    """``cnnlab.pkg.module.Name``'s declaration, or None where there is no such source."""
    module, _, name = dotted.rpartition(".")
    source = _Source.of(module)
    return source.declared(name) if source is not None else None


@cache
def registered(kind: str) -> dict[str, Declared]:
    """Every component registered as ``kind`` in the registry's packages, by name."""
    from cnnlab.registry import PACKAGES

    found = {}
    for package in PACKAGES:
        for path in sorted((PACKAGE.parent / package.replace(".", "/")).rglob("*.py")):
            source = _Source.of(_module_of(path))
            for name, target in source.registrations.get(kind, {}).items():
                # a class without an __init__ of its own takes no options (nn.Module's)
                found[name] = source.declared(target) or Declared(target, [])
    return found


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _Source:
    """One module's source: its definitions, and the names its annotations may use."""

    def __init__(self, module: str, tree: ast.Module):
        self.module, self.tree = module, tree
        self.definitions = {
            node.name: node
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.ClassDef)
        }
        self.registrations: dict[str, dict[str, str]] = {}
        for node in ast.walk(tree):
            call = _register_call(node)
            if call is not None:
                kind, name, target = call
                self.registrations.setdefault(kind, {})[name] = target

    @classmethod
    @cache
    def of(cls, module: str) -> "_Source | None":
        base = PACKAGE.parent / module.replace(".", "/")
        path = next(
            (p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None
        )
        return cls(module, ast.parse(path.read_text())) if path is not None else None

    @cached_property
    def namespace(self) -> dict[str, Any]:
        names: dict[str, Any] = {}
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    names[alias.asname or alias.name] = _imported(node.module, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    names[alias.asname or alias.name.split(".")[0]] = Opaque
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    names[target.id] = _evaluated(node.value, names, Opaque)
            elif isinstance(node, ast.ClassDef | ast.FunctionDef):
                names[node.name] = Opaque  # a class used as a type (nn.Module): never set
        return names

    def declared(self, name: str) -> Declared | None:
        node = self.definitions.get(name)
        if node is None:
            return None
        if isinstance(node, ast.FunctionDef):
            return Declared(name, self._parameters(node.args))
        if _is_dataclass(node):
            fields = [n for n in node.body if isinstance(n, ast.AnnAssign)]
            params = [
                self._parameter(f.target.id, f.annotation, f.value, inspect.Parameter.KEYWORD_ONLY)
                for f in fields
                if isinstance(f.target, ast.Name)
            ]
            return Declared(name, params)
        init = next(
            (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
            None,
        )
        if init is None:  # a base class's: read from the first base defined here, if any
            bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
            return next((d for b in bases if (d := self.declared(b)) is not None), None)
        return Declared(name, self._parameters(init.args)[1:])  # less self

    def _parameters(self, args: ast.arguments) -> list[inspect.Parameter]:
        kinds = inspect.Parameter
        positional = [*args.posonlyargs, *args.args]
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        params = [
            self._parameter(a.arg, a.annotation, d, kinds.POSITIONAL_OR_KEYWORD)
            for a, d in zip(positional, defaults, strict=True)
        ]
        params += [
            self._parameter(a.arg, a.annotation, d, kinds.KEYWORD_ONLY)
            for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
        ]
        if args.vararg is not None:
            params.insert(len(positional), kinds(args.vararg.arg, kinds.VAR_POSITIONAL))
        if args.kwarg is not None:
            params.append(kinds(args.kwarg.arg, kinds.VAR_KEYWORD))
        return params

    def _parameter(self, name, annotation, default, kind) -> inspect.Parameter:
        empty = inspect.Parameter.empty
        typed = empty if annotation is None else _evaluated(annotation, self.namespace, Opaque)
        value = empty if default is None else _evaluated(default, self.namespace, Opaque)
        return inspect.Parameter(name, kind, default=value, annotation=typed)


def _imported(module: str, name: str) -> Any:
    if module in LIGHT:
        return getattr(importlib.import_module(module), name, Opaque)
    source = _Source.of(module) if module.startswith("cnnlab.") else None
    if source is None or name not in source.namespace:
        return Opaque
    # an alias defined there (Rates, ActFactory); a class or function is a type no config sets
    return source.namespace[name]


def _evaluated(node: ast.expr, names: dict[str, Any], otherwise: Any) -> Any:
    try:
        return eval(compile(ast.Expression(node), "<declaration>", "eval"), {**names})  # noqa: S307
    except Exception:  # a name this reading does not know: what no config can set
        return otherwise


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any(
        "dataclass" in ast.unparse(d.func if isinstance(d, ast.Call) else d)
        for d in node.decorator_list
    )


def _register_call(node: ast.AST) -> tuple[str, str, str] | None:
    """(kind, name, target) of ``@register(kind, name)`` or ``register(kind, name)(Target)``."""
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        for decorator in node.decorator_list:
            found = _register_args(decorator)
            if found is not None:
                return (*found, node.name)
    if isinstance(node, ast.Call) and _register_args(node.func) and node.args:
        target = node.args[0]
        if isinstance(target, ast.Name):
            return (*_register_args(node.func), target.id)
    return None


def _register_args(node: ast.AST) -> tuple[str, str] | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "register"
        and len(node.args) == 2
        and all(isinstance(a, ast.Constant) for a in node.args)
    ):
        return node.args[0].value, node.args[1].value
    return None
