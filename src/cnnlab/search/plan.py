"""From the search's command line to what it runs: the space file, the overrides every trial
gets, and the training config they compose, checked before any trial starts."""

import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, open_dict

from cnnlab import CONF
from cnnlab.config.job import check_choices, compose, new_dir
from cnnlab.errors import ConfigError, first_line
from cnnlab.search.space import Space, distribution, find, hydra_value, load, override

# Where a trial runs is the search's to say (its own directory, one job of -m).
PLACED = ("hydra.sweep.", "hydra.run.", "hydra.mode", "hydra.job.", "hydra.callbacks.report")


def split(words: list[str]) -> tuple[Space | None, list[str]]:
    """The space (the word that is not an override: a file or a name in spaces/), the overrides."""
    named = [w for w in words if "=" not in w and not w.startswith("~")]
    if len(named) > 1:
        raise ConfigError(f"one space file, not {len(named)} ({', '.join(named)})")
    space = load(find(named[0])) if named else None
    return space, [w for w in words if w not in named]


def check_overrides(space: Space, fixed: list[str]) -> None:
    """Each fixed override sets one value, of a setting the space does not vary."""
    varied = {key.lstrip("+") for key in space.params}
    for line in fixed:
        try:
            (parsed,) = OverridesParser.create().parse_overrides([line])
        except Exception as err:
            raise ConfigError(f"{line}: not an override ({first_line(err)})") from None
        key = parsed.key_or_group
        if parsed.is_sweep_override():
            raise ConfigError(
                f"{line}: every trial takes one value of a fixed override; the space file "
                "says what varies"
            )
        if key in varied:
            raise ConfigError(f"{key} is both varied by the space and fixed by {line}")
        if key.startswith(PLACED):
            raise ConfigError(f"{line}: the search places each trial in its own directory")


def composed(space: Space, fixed: list[str]) -> DictConfig:
    """The training config of the space's first values (every group option it names checked
    too), with Hydra's: unknown keys and options fail here, in one line, not in every trial."""
    check_overrides(space, fixed)
    params = space.params.items()
    every = [f"{k}={','.join(map(hydra_value, p['choices']))}" for k, p in params if "choices" in p]
    check_choices(fixed + every, CONF)
    cfg = compose(fixed + [override(k, v) for k, v in _firsts(space).items()], hydra=True)
    _check_ranked(cfg)
    return cfg


def check_values(space: Space, fixed: list[str]) -> None:
    """Each end of a range and each choice (the other settings at their first) through a run's
    checks: a value no trial can run with is refused now, not in a trial hours into the search."""
    from cnnlab.run.checks import check  # (torch: loaded once the space itself is sound)

    firsts = _firsts(space)
    for key, param in space.params.items():
        dist = distribution(param)
        values = param["choices"] if "choices" in param else [dist.low, dist.high]
        for value in values:
            lines = [override(k, v) for k, v in {**firsts, key: value}.items()]
            cfg = compose(fixed + lines, hydra=False)
            with open_dict(cfg):
                cfg.paths.output_dir = "trial"  # (Hydra's, which this config has none of)
            try:
                check(cfg)
                _check_ranked(cfg)
            except ConfigError as err:
                raise ConfigError(
                    f"params.{key} takes {hydra_value(value)}, which a trial refuses: {err}"
                ) from None


def _firsts(space: Space) -> dict[str, Any]:
    return {k: p["choices"][0] if "choices" in p else p["low"] for k, p in space.params.items()}


def _check_ranked(cfg: DictConfig) -> None:
    if not (cfg.data.val_split or cfg.data.get("folds")):
        raise ConfigError(
            "the search ranks trials by their best validation accuracy, which needs "
            "data.val_split > 0"
        )


def new_directory(cfg: DictConfig) -> Path:
    """A new search directory: logs/search/<time>."""
    return Path(new_dir(f"{cfg.paths.log_dir}/search/{time.strftime('%Y-%m-%d_%H-%M-%S')}"))
