"""A search space file (spaces/*.yaml), checked before any trial starts: each mistake is one
ConfigError line that names the file, the key and what is accepted."""

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf

from cnnlab import CONF
from cnnlab.errors import ConfigError, first_line
from cnnlab.options import Count, Positive, Target, check_options, parameters, shown

Choice = bool | int | float | str | None  # what Optuna stores for a categorical choice
# An override's key: a config path or group (``optimizer.lr``, ``activation``), + to add one.
KEY = re.compile(r"\+{0,2}[A-Za-z_][\w.\-/@]*")
# Beside conf/, not in it: Hydra would take a folder there for a group of train.py's config.
SPACES = CONF.parent / "spaces"


def float_param(
    type: Literal["float"], low: float, high: float, log: bool = False, step: Positive | None = None
) -> None:
    """A number in [low, high]; ``log``: drawn uniformly in log space (learning rates)."""


def int_param(
    type: Literal["int"], low: int, high: int, log: bool = False, step: Count = 1
) -> None:
    """An integer in [low, high] (both included)."""


def categorical_param(type: Literal["categorical"], choices: list[Choice]) -> None:
    """One of ``choices``: values, or a config group's options (``activation: [relu, elu]``)."""


DECLARED = {"float": float_param, "int": int_param, "categorical": categorical_param}
TYPES = ", ".join(DECLARED)


@dataclass(frozen=True)
class Space:
    """A space file's keys; no sampler: Optuna's TPESampler; no pruner: every trial runs out."""

    params: dict[str, Any]  # by override key, each entry checked against DECLARED
    n_trials: Count = 20
    sampler: Target | None = None
    pruner: Target | None = None

    def distributions(self) -> dict[str, Any]:
        """Optuna's distribution of each varied setting, by its override key."""
        return {key: distribution(param) for key, param in self.params.items()}

    def plain(self) -> dict[str, Any]:
        """The space as its file would write it (what the search directory keeps)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


def find(name: str) -> Path:
    """A space file by path, or by name in spaces/ (``example``)."""
    path = Path(name)
    if path.is_file():
        return path
    named = SPACES / f"{name}.yaml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in SPACES.glob("*.yaml")))
    raise ConfigError(f"no search space {name}: give a YAML file, or one of: {known}")


def load(path: Path) -> Space:
    """The space in ``path``, checked."""
    try:
        content = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:
        raise ConfigError(f"{path} cannot be read: {first_line(err)}") from None
    try:
        return read(content)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def read(content: Any) -> Space:
    """A space from its file's content; a mistake is one ConfigError line naming its key."""
    if not isinstance(content, dict) or "params" not in content:
        raise ConfigError("expected a mapping with params: (the settings to vary)")
    takes = parameters(Space)
    unknown = [str(k) for k in content if k not in takes]
    if unknown:
        raise ConfigError(f"no option {', '.join(unknown)}; a space file takes: {', '.join(takes)}")
    check_options(Space, content, "")
    if not content["params"]:
        raise ConfigError("params is empty: name at least one setting to vary")
    for key, param in content["params"].items():
        _check_param(key, param)
    return Space(**content)


def _check_param(key: str, param: Any) -> None:
    where = f"params.{key}"
    if not KEY.fullmatch(key):
        raise ConfigError(f"{where}: not a config key (optimizer.lr) or group (activation)")
    if not isinstance(param, dict) or "type" not in param:
        raise ConfigError(f"{where}: expected a mapping with a type: {TYPES}")
    kind = param["type"]
    if kind not in DECLARED:
        raise ConfigError(f"{where}: unknown type {shown(kind)}; choose from: {TYPES}")
    check_options(DECLARED[kind], param, where)
    declared = parameters(DECLARED[kind])
    missing = [k for k, p in declared.items() if p.default is p.empty and k not in param]
    if missing:
        raise ConfigError(f"{where}: a {kind} needs {' and '.join(missing)}")
    if kind == "categorical":
        if not param["choices"]:
            raise ConfigError(f"{where}.choices is empty: give at least one")
        return
    low, high = param["low"], param["high"]
    if low >= high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if param.get("log") and low <= 0:
        raise ConfigError(f"{where}: log needs low > 0 (low is {low})")
    step = param.get("step")
    if param.get("log") and step is not None and (kind == "float" or step != 1):
        raise ConfigError(f"{where}: step and log cannot be used together")
    try:  # what is left to Optuna's own checks
        distribution(param)
    except ValueError as err:
        raise ConfigError(f"{where}: {first_line(err)}") from None


def distribution(param: dict[str, Any]) -> Any:
    """Optuna's distribution for one checked entry of ``params``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    options = {key: value for key, value in param.items() if key != "type"}
    if param["type"] == "categorical":
        return CategoricalDistribution(**options)
    kind = FloatDistribution if param["type"] == "float" else IntDistribution
    return kind(**options)  # (log and step: Optuna's defaults are those declared above)


def override(key: str, value: Any) -> str:
    """``key=value`` as Hydra reads it back to the same value (``optimizer.lr=0.0031``)."""
    return f"{key}={hydra_value(value)}"


def hydra_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return shown(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as this float (1e-05 too)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][\w.\-/]*", text) and text.lower() not in _WORDS:
        return text
    return "'" + text.replace("'", "\\'") + "'"  # (Hydra's escape for a quote inside quotes)


_WORDS = {"null", "true", "false", "inf", "nan"}  # words Hydra reads as other than strings
