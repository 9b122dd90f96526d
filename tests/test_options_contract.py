"""The options contract, tried with generated values (hypothesis): for every option of every
config group, read from the declarations (so a new option is tried without touching this
file), a value either passes the checks and builds, or is refused in one ConfigError line that
names the option. Never another exception, never a traceback for the user."""

import copy
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnlab import CONF
from cnnlab.errors import ConfigError
from cnnlab.options import _settable, parameters
from cnnlab.run.assemble import build_datamodule, build_module, build_trainer
from cnnlab.run.checks import check, declared_nodes
from cnnlab.training.schedules import build_schedule

from conftest import compose_cfg

# Groups whose options are paths, loggers and whole recipes: checked through the groups they set.
NOT_TRIED = {"experiment", "hydra", "paths", "debug", "logger", "study"}
CHOICES = [("top", "train")] + [
    (group.name, str(path.relative_to(group).with_suffix("")))
    for group in sorted(CONF.iterdir())
    if group.is_dir() and group.name not in NOT_TRIED
    for path in sorted(group.rglob("*.yaml"))
]
# Values per option: enough to meet each kind of mistake within a few CI minutes; raise it
# (CNNLAB_CONTRACT_EXAMPLES=200) to search harder.
EXAMPLES = int(os.environ.get("CNNLAB_CONTRACT_EXAMPLES", "4"))
FAKE = ["data=fake", "data.dataset.train_size=8", "data.dataset.test_size=4"]

# What a command line can give a setting: YAML's values, edges of every range included.
NUMBERS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 0.5, 1.5, -0.5, 10**9, -(10**9), 1e300, math.inf, math.nan]),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
)
WORDS = st.text(alphabet="abcxyz_019-", max_size=6)
SCALARS = st.one_of(NUMBERS, WORDS, st.booleans(), st.none())
VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(NUMBERS, WORDS), max_size=5),
    st.dictionaries(WORDS, SCALARS, max_size=2),
)


def values_for(annotation: Any) -> st.SearchStrategy:
    """Anything a user might type, and values the annotation itself describes (so that the
    'passes and builds' branch is tried as well as the refusals)."""
    if "Any" in repr(annotation):  # a mapping of anything: hypothesis cannot make "anything"
        return VALUES
    return st.one_of(VALUES, st.from_type(annotation))


def options_of(cfg: DictConfig, group: str) -> list[tuple[str, str, Any]]:
    """(node, key, annotation) for every declared option of ``group``'s nodes in ``cfg``."""
    found = []
    nodes = list(declared_nodes(OmegaConf.to_container(cfg, resolve=True)))
    wheres = {node.where for node in nodes}  # a node of its own is tried as one
    for node in nodes:
        place = node.where or "top"
        if place != group and not place.startswith(f"{group}."):
            continue
        for name, param in parameters(node.declaration, node.supplied).items():
            key = f"{node.where}.{name}" if node.where else name
            if _settable(param.annotation) and key not in wheres:
                found.append((node.where, key, param.annotation))
    return found


def build_network(cfg: DictConfig) -> None:
    with torch.device("meta"):  # so that a huge width costs no memory
        build_module(cfg)


def build_schedule_of(cfg: DictConfig) -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    build_schedule(optimizer, OmegaConf.to_container(cfg.scheduler, resolve=True), 100.0, 10)


# What each group's options reach, beyond the checks (which also build the optimizer).
BUILDS = {
    "top": [build_network, build_trainer],
    "model": [build_network],
    "activation": [build_network],
    "norm": [build_network],
    "init": [build_network],
    "regularizer": [build_network],
    "optimizer": [build_network],
    "scheduler": [build_schedule_of],
    "data": [build_datamodule],
    "augment": [build_datamodule],
    "preprocess": [build_datamodule],
    "trainer": [build_trainer],
    "callbacks": [build_trainer],
}


def build_all(cfg: DictConfig, group: str) -> None:
    """The checks, then what a run builds from ``group`` before it loads any data."""
    check(cfg)
    for make in BUILDS[group]:
        make(cfg)


@pytest.mark.parametrize(("group", "choice"), CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_value_of_every_option_builds_or_is_refused_in_one_line(
    group, choice, tmp_path: Path
):
    chosen = [f"{group}={choice}"] if group != "top" else []
    base = compose_cfg(tmp_path, ["logger=csv", *(FAKE if group != "data" else []), *chosen])
    try:
        build_all(base, group)  # as shipped, every choice builds (a GPU's on a machine with one)
    except ConfigError as err:
        if group != "trainer" or torch.cuda.is_available():
            raise
        assert str(err).startswith("trainer (") and "gpu" in str(err), err
    tried = options_of(base, group)
    assert tried or group in ("norm", "activation", "init", "preprocess"), f"{choice} declares none"
    for where, key, annotation in tried:
        try_values(base, group, where, key, annotation)


def try_values(base: DictConfig, group: str, where: str, key: str, annotation: Any) -> None:
    """Set ``key`` of ``base`` to generated values; each builds or is refused in one line."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same values on every CI run
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(value=values_for(annotation))
    def attempt(value):
        cfg = copy.deepcopy(base)
        with open_dict(cfg):
            OmegaConf.update(cfg, key, value, merge=False)
        try:
            build_all(cfg, group)
        except ConfigError as err:
            message = str(err)
            assert "\n" not in message, message
            assert key in message or (where and message.startswith(f"{where} (")), message

    attempt()
