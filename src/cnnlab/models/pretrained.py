"""``init.checkpoint=PATH`` (README.md, Fine-tuning): a head that does not fit keeps its fresh
init; any other difference is another architecture, refused."""

import logging
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config.settings import upgrade_hparams
from cnnlab.errors import ConfigError, first_line
from cnnlab.models.parts import in_parts, parts
from cnnlab.options import Supplied

log = logging.getLogger(__name__)
ACCEPTED = "a cnnlab .ckpt, or a model's state_dict() saved with torch.save or as .safetensors"


def load_pretrained(net: Supplied[nn.Module], checkpoint: str | None = None) -> None:
    """Copy the weights in ``checkpoint`` into ``net``, all but a head that does not fit."""
    if checkpoint is None:
        return
    weights, model = read_weights(checkpoint)
    own = net.state_dict()
    _, head = parts(net)
    where = f"init.checkpoint={checkpoint}{f' (model={model})' if model else ''}"
    mismatch = _first_mismatch(own, weights, head)
    if mismatch:
        raise ConfigError(f"{where} holds another architecture: {mismatch}")
    kept = [k for k in own if k not in weights or weights[k].shape != own[k].shape]
    net.load_state_dict({**own, **{k: weights[k] for k in own if k not in kept}})
    if kept:
        shapes = ", ".join(f"{k} ({_shape(own[k])}{_theirs(weights.get(k))})" for k in kept)
        log.info(f"{where}: loaded all but the head, which keeps its fresh init: {shapes}")
    else:
        log.info(f"{where}: loaded, the head as well")


def read_weights(path: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict in ``path`` and, for a cnnlab checkpoint, the model it was trained as."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise ConfigError(f"init.checkpoint={path}: a folder, not a file; expected {ACCEPTED}")
    if not file.is_file():
        raise ConfigError(f"init.checkpoint={path}: no such file")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file  # timm's dependency

            saved: Any = load_file(file)
        else:  # only tensors and plain values: a file cannot run code when it is read
            saved = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        why = _unreadable(err, file)
        raise ConfigError(
            f"init.checkpoint={path}: cannot be read ({why}); expected {ACCEPTED}"
        ) from None
    model = None
    if isinstance(saved, Mapping) and "state_dict" in saved:  # Lightning's
        hparams = upgrade_hparams(saved.get("hyper_parameters") or {})
        model = (hparams.get("model") or {}).get("name")
        saved = saved["state_dict"]
        if any(k.startswith("net.") for k in saved):  # cnnlab's Classifier holds the network
            saved = {k.removeprefix("net."): v for k, v in saved.items() if k.startswith("net.")}
    if not isinstance(saved, Mapping) or not all(torch.is_tensor(v) for v in saved.values()):
        raise ConfigError(f"init.checkpoint={path}: holds no state dict; expected {ACCEPTED}")
    return dict(saved), model


def _unreadable(err: Exception, file: Path) -> str:
    """Why torch or safetensors could not read ``file``, in a few words: their own message is
    a page (weights_only's) or a bare number (a text file's: KeyError 101)."""
    if "Weights only load failed" in str(err):  # a file may not run code when it is read
        return "it holds Python objects beside tensors: a whole model, torch.save(model)?"
    if file.stat().st_size == 0:
        return "the file is empty"
    said = f"{type(err).__name__}: {first_line(err)}"
    if file.suffix != ".safetensors" and not zipfile.is_zipfile(file):  # (or torch < 1.6's)
        return f"cut short, or not a file torch.save wrote: {said}"
    return said


def _first_mismatch(
    own: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], head: dict[str, nn.Module]
) -> str | None:
    for key, tensor in own.items():
        if in_parts(key, head):
            continue
        if key not in weights:
            return f"it has no {key} ({_shape(tensor)} here)"
        if weights[key].shape != tensor.shape:
            return f"{key} is {_shape(tensor)} here and {_shape(weights[key])} in it"
    extra = [k for k in weights if k not in own and not in_parts(k, head)]
    if extra:
        return f"it has {extra[0]} ({_shape(weights[extra[0]])}), which this network lacks"
    return None


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(n) for n in tensor.shape) or "a scalar"


def _theirs(tensor: torch.Tensor | None) -> str:
    return f"; {_shape(tensor)} in the file" if tensor is not None else "; not in the file"
