"""What the command-line scripts share: the checks made before Hydra starts (a run directory that
is a file, ``--help GROUP``, a mistyped option), and one way a run ends on a user's mistake or a
fault: one line, exit status 2 (1 for a fault), and no directory left by a run refused at start."""

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict

from cnnlab import CONF
from cnnlab.config.job import check_choices, compose, in_sweep
from cnnlab.errors import ConfigError, Diverged, SaveFailed
from cnnlab.files import LOCK, in_use, read_record
from cnnlab.options import _settable, describe, parameters, shown
from cnnlab.run.checks import FromSource, declared_nodes

SAID = {ConfigError: "error", Diverged: "training diverged", SaveFailed: "run failed"}


def prepare(argv: list[str], own: tuple[str, ...] | None = ()) -> None:
    """Before Hydra starts: refuse a run directory that is a file, answer ``--help GROUP`` (``own``:
    a script's top keys beside the groups, ``src/tune.py``'s ``find``; None: no group help), and
    name an option that does not exist."""
    check_dir_overrides(argv)
    asks_help = any(a in ("-h", "--help") for a in argv)
    if own is not None and asks_help and any(not a.startswith("-") and "=" not in a for a in argv):
        answer(argv, own)
    # (other config folders: --config-dir or hydra.searchpath; Hydra checks those itself)
    if not any(a.startswith(("-cd", "--config-dir", "hydra.searchpath")) for a in argv):
        with one_line():
            check_choices([a for a in argv if not a.startswith("-")], CONF)


@contextmanager
def one_line(output_dir: str | Path | None = None, program: str = "cnnlab") -> Iterator[None]:
    """End a user's mistake (status 2; a refused run leaves no ``output_dir``) or a fault (1) with
    one line on stderr; in a ``-m`` sweep the job fails instead (Hydra runs the others)."""
    try:
        yield
    except (ConfigError, Diverged, SaveFailed) as err:
        what = next(word for kind, word in SAID.items() if isinstance(err, kind))
        print(f"{program}: {what}: {err}", file=sys.stderr)
        if in_sweep():
            raise type(err)(str(err)) from None
        if isinstance(err, ConfigError) and output_dir is not None:
            remove_refused(Path(output_dir))  # nothing ran: leave no run directory behind
        sys.exit(2 if isinstance(err, ConfigError) else 1)


def answer(args: list[str], own: tuple[str, ...] = ()) -> None:
    """``--help GROUP ... [overrides]``: print the groups' help and exit 0, or one line and exit
    2; ``own`` are the script's top keys, left out of what help composes."""
    given = [a for a in args if not a.startswith("-")]
    words = [a for a in given if "=" not in a]
    overrides = [a for a in given if "=" in a and _key(a) not in own]
    with one_line():
        check_choices(overrides, CONF)
        print(group_help(words, overrides), end="")
    sys.exit(0)


def _key(override: str) -> str:
    return override.lstrip("+~").split("=")[0].split(".")[0]


def group_help(groups: list[str], overrides: list[str]) -> str:
    """The help text of ``groups`` (``["model", "optimizer"]``; "top" for the options at the
    top of train.yaml) in the config that ``overrides`` compose."""
    folders = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
    for group in groups:
        if group != "top" and group not in folders:
            choices = ", ".join(["top", *folders])
            raise ConfigError(f"--help {group}: no such group; choose from: {choices}")
    plain, chosen = _composed(overrides)
    nodes = list(declared_nodes(plain, FromSource()))  # (no torch to import)
    parts = [_group(group, nodes, chosen) for group in groups]
    return "\n\n".join(parts) + "\n"


def _composed(overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The config as written (``${paths.output_dir}/checkpoints``, not a path of this moment)
    and the option chosen in each group."""
    cfg = compose(overrides, hydra=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=False), choices


def _group(group: str, nodes: list, chosen: dict[str, str]) -> str:
    lines = [_heading(group, chosen.get(group))]
    own = {node.where for node in nodes}  # a nested node is listed as a node of its own
    folders = {p.name for p in CONF.iterdir() if p.is_dir()}
    for node in nodes:
        place = node.where or "top"
        if place.split(".")[0] not in folders:  # a node of train.yaml's own (diagnose)
            place = f"top.{place}" if node.where else place
        if place != group and not place.startswith(f"{group}."):
            continue
        what = node.name or getattr(node.declaration, "__qualname__", "")
        target = node.options.get("_target_")
        lines.append(f"  {node.where or 'top'} ({target or what}):")
        rows = [row for row in _rows(node) if row[0].lstrip("+") not in own]
        width = max((len(key) for key, _, _ in rows), default=0)
        lines += [f"    {key:<{width}}  {accepts}  [{value}]" for key, accepts, value in rows]
        if not rows:
            lines.append("    (no options)")
    if len(lines) == 1:
        lines.append("  (no declared options in this config)")
    return "\n".join(lines)


def _heading(group: str, chosen: str | None) -> str:
    if group == "top":
        return "top: the options at the top of train.yaml, and its own nodes (diagnose)"
    folder = CONF / group
    choices = sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))
    now = f"{group}={chosen}; " if chosen else ""
    return f"{group} ({now}choices: {', '.join(choices)})"


def _rows(node) -> Iterator[tuple[str, str, str]]:
    """(key, what it accepts, its value) for each option of a node a config can set."""
    for name, param in parameters(node.declaration, node.supplied).items():
        if not _settable(param.annotation):
            continue
        key = f"{node.where}.{name}" if node.where else name
        if name in node.options:
            value = shown(node.options[name])
        else:
            key = f"+{key}"
            default = param.default
            value = "required" if default is param.empty else f"default {shown(default)}"
        yield key, describe(param.annotation), value


def remove_refused(directory: Path) -> None:
    """Remove a refused run's directory if it holds nothing but what Hydra and the refusal wrote
    (.hydra/, the job's log, a metrics.json of the error): never another run's files."""
    if not directory.is_dir() or in_use(directory):  # (a second run started into a live one)
        return
    names = [p.name for p in directory.iterdir()]
    if not all(n in (".hydra", "metrics.json", LOCK) or n.endswith(".log") for n in names):
        return
    record = directory / "metrics.json"
    if record.is_file():
        error = (read_record(record) or {}).get("error") or ""
        if not error.startswith("ConfigError"):
            return
    shutil.rmtree(directory)


def check_dir_overrides(args: list[str]) -> None:
    """``hydra.run.dir=`` or ``hydra.sweep.dir=`` at or under a file: one line and status 2 before
    Hydra tries to make it (its mkdir fails with a page of traceback, status 0 for a single run)."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") not in ("hydra.run.dir", "hydra.sweep.dir") or "${" in value:
            continue
        path = Path(value.strip("'\""))
        blocked = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            print(f"cnnlab: error: {arg}: {blocked} is a file, not a folder", file=sys.stderr)
            raise SystemExit(2)
