"""Classifying image files with a checkpoint, read as the model was trained (channels, size)."""

from pathlib import Path
from typing import Literal

import torch

from cnnlab.data.image_files import image_files, read_image
from cnnlab.errors import ConfigError, first_line
from cnnlab.options import Count, check_options
from cnnlab.training.module import Classifier


def check_device(device: str) -> None:
    """A GPU only where one is visible (the device's name is checked with the options)."""
    if device in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no CUDA GPU is visible here; use device=cpu")


def load_classifier(path: str | Path, device: str = "cpu") -> Classifier:
    """The model of a cnnlab checkpoint, in eval mode and not compiled (compiling pays off over
    many batches, and export traces the plain network); a one-line ConfigError if not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt={path}: no such checkpoint file")
    try:
        module = Classifier.load(path, device, compile=False)
    except Exception as err:  # not a checkpoint, or another program's: say which file
        raise ConfigError(f"ckpt={path} is not a cnnlab checkpoint ({first_line(err)})") from None
    return module.eval()


def predict_options(
    ckpt: str | None = None,
    inputs: str | None = None,
    top_k: Count = 3,
    batch_size: Count = 256,
    device: Literal["cpu", "cuda"] = "cpu",
) -> None:
    """The options of ``predict.yaml`` (``inputs``: an image file or a folder)."""


def predict(
    ckpt: str | Path, inputs: str | Path, k: int = 3, batch_size: int = 256, device: str = "cpu"
) -> tuple[list[dict], list[dict]]:
    """Each readable image's top-``k`` classes (``{file, top: [{label, index, probability}]}``)
    and the files skipped with the reason (``{file, error}``)."""
    given = {"ckpt": ckpt, "inputs": inputs, "top_k": k, "batch_size": batch_size, "device": device}
    check_options(
        predict_options, {n: str(v) if isinstance(v, Path) else v for n, v in given.items()}, ""
    )
    check_device(device)
    module = load_classifier(ckpt, device)
    classes = module.num_classes
    if not 1 <= k <= classes:
        raise ConfigError(f"top_k={k}: the model has {classes} classes; choose 1 to {classes}")
    names = module.class_names or [str(i) for i in range(classes)]
    files, results, skipped = image_files(inputs), [], []
    for start in range(0, len(files), batch_size):
        read = []
        for path in files[start : start + batch_size]:
            try:
                read.append((path, read_image(path, *module.image_shape[:2])))
            except ValueError as err:
                skipped.append({"file": str(path), "error": str(err)})
        if not read:
            continue
        images = torch.stack([image for _, image in read]).to(module.device)
        with torch.no_grad():
            best = module(images).float().softmax(1).topk(k, dim=1)
        for (path, _), p, i in zip(read, best.values.tolist(), best.indices.tolist(), strict=True):
            top = [
                {"label": names[c], "index": c, "probability": q} for q, c in zip(p, i, strict=True)
            ]
            results.append({"file": str(path), "top": top})
    return results, skipped
