"""The package's layers (docs/development.md, "Where each concern lives"): a module imports from
its own layer and those below, never from one above, and no modules import each other in a
circle, at the top of a file or inside a function."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cnnlab"
# Bottom to top; a name is a module or package directly under src/cnnlab.
LAYERS = [
    {"errors", "options", "files", "processes"},
    {"registry"},
    {"config"},
    {"layers", "models", "data"},
    {"training"},
    {"callbacks", "results"},
    {"run"},
    {"inference", "tuning", "search"},
    {"cli"},
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The cnnlab modules ``path`` imports, wherever in the file."""
    named = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            named |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in named if name in known and name != "cnnlab"}


def layer(module: str) -> int:
    top = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if top in names)


GRAPH = {name: imports(path, set(modules())) for name, path in modules().items()}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "cnnlab"))
def test_a_module_imports_nothing_from_a_layer_above_its_own(module):
    above = sorted(other for other in GRAPH[module] if layer(other) > layer(module))
    assert not above, f"{module} imports {above}, which sit above it"


def test_no_modules_import_each_other_in_a_circle():
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("a circle: " + " -> ".join([*path[path.index(name) :], name]))
        if name not in done:
            for other in sorted(GRAPH[name]):
                visit(other, [*path, name])
            done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])


def test_every_module_has_a_layer():
    tops = {name.split(".")[1] for name in GRAPH if name != "cnnlab"}
    assert tops <= set().union(*LAYERS), tops - set().union(*LAYERS)
