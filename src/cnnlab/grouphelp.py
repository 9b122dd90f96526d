"""``python src/train.py --help GROUP``: a group's options, read from their declarations.

Each option is listed with what it accepts (the words of the error a wrong value gets) and its
value in the config composed from the rest of the command line, so ``--help scheduler
scheduler=step`` shows StepLR's options as that run would have them. An option a declaration
takes but the YAML does not set is shown with ``+`` in front, as it is set on the command line.
"""

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from cnnlab.errors import ConfigError
from cnnlab.options import _settable, describe, parameters, shown
from cnnlab.validate import declared_nodes


def answer(args: list[str], conf: Path, own: tuple[str, ...] = ()) -> None:
    """``--help GROUP ... [overrides]`` of a script's command line: print the groups' help and
    exit 0, or one line and exit 2. ``own`` are the script's top keys beside the training
    config's (``src/tune.py``'s ``find``), left out of what help composes."""
    import sys

    from hydra.errors import HydraException

    from cnnlab.validate import check_choices

    given = [a for a in args if not a.startswith("-")]
    words = [a for a in given if "=" not in a]
    overrides = [a for a in given if "=" in a and _key(a) not in own]
    try:
        check_choices(overrides, conf)
        print(group_help(words, overrides, conf), end="")
    except (ConfigError, HydraException) as err:
        print(f"cnnlab: error: {str(err).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)


def _key(override: str) -> str:
    return override.lstrip("+~").split("=")[0].split(".")[0]


def group_help(groups: list[str], overrides: list[str], conf: Path) -> str:
    """The help text of ``groups`` (``["model", "optimizer"]``; "top" for the options at the
    top of train.yaml) in the config that ``overrides`` compose."""
    folders = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name != "hydra")
    for group in groups:
        if group != "top" and group not in folders:
            choices = ", ".join(["top", *folders])
            raise ConfigError(f"--help {group}: no such group; choose from: {choices}")
    plain, chosen = _composed(overrides, conf)
    nodes = list(declared_nodes(plain))
    parts = [_group(group, nodes, chosen, conf) for group in groups]
    return "\n\n".join(parts) + "\n"


def _composed(overrides: list[str], conf: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The config as written (``${paths.output_dir}/checkpoints``, not a path of this moment)
    and the option chosen in each group."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=False), choices


def _group(group: str, nodes: list, chosen: dict[str, str], conf: Path) -> str:
    lines = [_heading(group, chosen.get(group), conf)]
    own = {node.where for node in nodes}  # a nested node is listed as a node of its own
    folders = {p.name for p in conf.iterdir() if p.is_dir()}
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


def _heading(group: str, chosen: str | None, conf: Path) -> str:
    if group == "top":
        return "top: the options at the top of train.yaml, and its own nodes (diagnose)"
    folder = conf / group
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
            required = default is inspect.Parameter.empty
            value = "required" if required else f"default {shown(default)}"
        yield key, describe(param.annotation), value
