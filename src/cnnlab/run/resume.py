"""Whether and from where a run goes on (README's "Nothing lost"). A checkpoint carries the
settings that decide the result (``cnnlab.run.state``): ``resume=auto`` refuses one written for
other settings rather than silently mixing two runs."""

import functools
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnlab.config.job import by_submitit, in_sweep
from cnnlab.config.settings import SCOPE, settings, upgrade
from cnnlab.errors import ConfigError, first_line
from cnnlab.files import read_record

log = logging.getLogger(__name__)
# What torch.load raises for a file that is not a whole checkpoint (empty, cut short, text).
UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError)


def resume_mode(cfg: DictConfig) -> str | None:
    """None (start afresh), "auto" or a checkpoint path."""
    resume = cfg.get("resume")
    # A DDP rank that Lightning started (LOCAL_RANK > 0) decides as rank 0 does, in its sweep.
    other_rank = os.environ.get("LOCAL_RANK", "0") != "0"
    if resume is None and (in_sweep() or by_submitit() or other_rank):
        return "auto"
    return None if resume is None else str(resume)


def finished_before(cfg: DictConfig) -> dict | None:
    """metrics.json of a run of these settings that already finished in this directory."""
    path = Path(cfg.paths.output_dir) / "metrics.json"
    record = read_record(path) if resume_mode(cfg) == "auto" else None
    if record is None or record.get("status") != "finished":
        return None
    _same_settings(record, cfg, f"{path.parent} finished")
    return record


def resume_from(cfg: DictConfig) -> str | None:
    """The checkpoint to continue from, if any. A directory that holds another run's
    checkpoints is refused unless resume says what to do with it."""
    mode = resume_mode(cfg)
    out = Path(cfg.paths.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    if mode is None:
        if (out / "metrics.json").is_file() or any(out.glob("checkpoints/*.ckpt")):
            raise ConfigError(
                f"{out} already holds a run: resume=auto goes on with it; "
                "or start in a new directory"
            )
        return None
    if mode == "auto":
        return _last_good(cfg, [last, last.with_name("best.ckpt")])
    if not Path(mode).is_file():
        raise ConfigError(f"resume={mode}: no such checkpoint (or use resume=auto)")
    try:
        run_state(mode)
    except UNREADABLE as err:
        raise ConfigError(f"resume={mode}: cannot be read ({why(err)})") from None
    return mode


def _last_good(cfg: DictConfig, checkpoints: list[Path]) -> str | None:
    """The first of ``checkpoints`` that can be read (a damaged last.ckpt is named and passed
    over: best.ckpt is an earlier state of the same run); None to start afresh."""
    for checkpoint in checkpoints:
        if not checkpoint.is_file():
            continue
        try:
            saved = run_state(checkpoint)
        except UNREADABLE as err:
            log.warning(f"{checkpoint} is damaged ({why(err)}): not resumed from")
            continue
        _same_settings(saved, cfg, f"{checkpoint} was written")
        if checkpoint != checkpoints[0]:
            log.warning(f"resuming from {checkpoint}, the newest checkpoint that can be read")
        return str(checkpoint)
    return None


def own_checkpoint(cfg: DictConfig, checkpoint: str | None) -> bool:
    """Whether ``checkpoint`` is this run's own (in its directory), not another run's."""
    out = Path(cfg.paths.output_dir).resolve()
    return checkpoint is not None and Path(checkpoint).resolve().is_relative_to(out)


def _same_settings(record: dict, cfg: DictConfig, what: str) -> None:
    """Refuse to go on with a run whose ``record`` holds other settings than ``cfg``'s."""
    saved, now = record.get("settings"), settings(cfg)
    if saved is None:
        return
    saved = upgrade(saved)
    keys = set(saved) | set(now)
    if record.get("settings_scope") != SCOPE:  # an older cnnlab recorded a few settings only
        keys = set(saved)
        log.warning(
            f"{what} by an older cnnlab, which recorded {len(saved)} settings: only those are "
            "compared (a changed callback, precision or batch limit would go unseen)"
        )
    differ = [k for k in sorted(keys) if saved.get(k) != now.get(k)]
    if differ:
        shown = ", ".join(f"{k}={saved.get(k)} (now {now.get(k)})" for k in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise ConfigError(
            f"{what} with other settings: {shown}{more}; use a new directory, or "
            "resume=PATH to go on from a checkpoint on purpose"
        )


def run_state(checkpoint: str | Path) -> dict[str, Any]:
    """What RunState saved in a checkpoint ({} for one written without it). A file that is not
    a checkpoint raises one of UNREADABLE."""
    # Start-up asks twice (settings, then the W&B id): read a large checkpoint once.
    return _run_state(str(checkpoint), os.stat(checkpoint).st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _run_state(checkpoint: str, modified_ns: int) -> dict[str, Any]:
    return _load(checkpoint).get("callbacks", {}).get("RunState", {})


def check_fits(weights: dict[str, Any], checkpoint: str) -> None:
    """Refuse ``checkpoint`` if its network is not the one built (``weights``, its state_dict):
    one line now, not Lightning's page of size mismatches after the whole build."""
    saved = _load(checkpoint).get("state_dict", {})
    differ = [
        f"{name} is {_shape(weights[name])} here and {_shape(saved[name])} in it"
        for name in weights
        if name in saved and tuple(weights[name].shape) != tuple(saved[name].shape)
    ]
    differ += [f"it has no {name}" for name in weights if name not in saved]
    differ += [f"it has {name}, which this network lacks" for name in saved if name not in weights]
    if differ:
        more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        raise ConfigError(
            f"resume={checkpoint}: a checkpoint of another network: {differ[0]}{more}; "
            "resume from a checkpoint of this model, data set and options"
        )


def _load(checkpoint: str) -> dict[str, Any]:
    import torch  # here: reading a metrics.json (report.py) needs no torch

    # torch's own words for these are about mmap or miniz, and mislead
    if os.path.getsize(checkpoint) == 0:
        raise ValueError("the file is empty")
    if not zipfile.is_zipfile(checkpoint):
        raise ValueError("cut short, or not a checkpoint: torch writes checkpoints as zip files")
    # mmap: the tensors are not read until used, so checking a large checkpoint costs little
    saved = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=False)
    if not isinstance(saved, dict):
        raise ValueError(f"it holds a {type(saved).__name__}, not a checkpoint's dict")
    return saved


def _shape(tensor: Any) -> str:
    return "x".join(str(n) for n in tensor.shape) or "a scalar"


def why(err: BaseException) -> str:
    """Why a file cannot be read, in a few words (torch's messages run to a paragraph)."""
    return first_line(err)[:200]
