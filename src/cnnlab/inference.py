"""Classifying ordinary image files with a checkpoint: reading them as the model was trained
(channels, size), and the top-k classes of each."""

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from cnnlab.errors import ConfigError
from cnnlab.module import Classifier
from cnnlab.options import Count, check_options, check_value

# What Pillow raises for a file that is not an image, is cut short, or is too large to decode
# (MemoryError: a large one that passed the limit, on a small machine).
UNREADABLE = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    OSError,
    ValueError,
    MemoryError,
)


def check_device(key: str, device: str, accepted: Any) -> None:
    """A device of the accepted names, and a GPU only where one is visible."""
    check_value(key, device, accepted)
    if device in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}={device}: no CUDA GPU is visible here; use {key}=cpu")


def load_classifier(path: str | Path, device: str = "cpu") -> Classifier:
    """The model of a cnnlab checkpoint, in eval mode and not compiled (compiling pays off over
    many batches, not a few; and export traces the plain network); a one-line ConfigError if
    ``path`` is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt={path}: no such checkpoint file")
    try:
        module = Classifier.load_from_checkpoint(path, map_location=device, compile=False)
    except Exception as err:  # not a checkpoint, or another program's: say which file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"ckpt={path} is not a cnnlab checkpoint ({reason})") from None
    return module.eval()


def image_files(path: str | Path) -> list[Path]:
    """``path`` itself, or every file under the folder ``path`` (sorted, hidden ones aside)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"inputs={path}: no such file or folder")
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """uint8 (channels, size, size): converted to grey (L) or RGB, the shorter side resized to
    ``size`` (antialiased), then the centre cropped square. ValueError if it cannot be read, or
    has more pixels than Pillow decodes without a warning (a decompression bomb)."""
    try:
        with warnings.catch_warnings():  # Pillow only warns of one up to twice its limit
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # (reads the header only: the size is checked)
                image = _eight_bits(image).convert("L" if channels == 1 else "RGB")
    except UNREADABLE as err:
        raise ValueError(str(err).splitlines()[0] or type(err).__name__) from None
    tensor = TF.pil_to_tensor(image)
    tensor = TF.resize(tensor, size, antialias=True)  # an int: the shorter side
    return TF.center_crop(tensor, [size, size])


def _eight_bits(image: Image.Image) -> Image.Image:
    """16- and 32-bit grey images (PNG, TIFF) scaled to 8 bits: Pillow's convert("L") clips
    them, and every value above 255, nearly all of a 16-bit image, becomes white."""
    if not (image.mode.startswith("I;16") or image.mode == "I"):  # "I": 16-bit files opened
        return image  # as 32-bit integers (older Pillow, TIFF)
    values = np.asarray(image, dtype=np.float64) * 255 / 65535
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


@torch.no_grad()
def top_k(module: Classifier, images: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and class indices of the ``k`` most probable classes, (N, k) each."""
    probs = module(images.to(module.device)).float().softmax(1)
    best = probs.topk(k, dim=1)
    return best.values.cpu(), best.indices.cpu()


def predict_options(
    ckpt: str | None = None,
    inputs: str | None = None,
    top_k: Count = 3,
    batch_size: Count = 256,
    device: Literal["cpu", "cuda"] = "cpu",
) -> None:
    """The options of ``predict.yaml``: the checkpoint, the images (a file or a folder), how many
    classes to list for each, and where to run."""


def predict(
    ckpt: str | Path, inputs: str | Path, k: int = 3, batch_size: int = 256, device: str = "cpu"
) -> tuple[list[dict], list[dict]]:
    """Each readable image's top-``k`` classes (``{file, top: [{label, index, probability}]}``)
    and the files skipped with the reason (``{file, error}``)."""
    given = {"ckpt": ckpt, "inputs": inputs, "top_k": k, "batch_size": batch_size, "device": device}
    check_options(
        predict_options, {n: str(v) if isinstance(v, Path) else v for n, v in given.items()}, ""
    )
    check_device("device", device, Literal["cpu", "cuda"])
    module = load_classifier(ckpt, device)
    net = module.hparams.net
    classes = net.get("num_classes", 10)
    if not 1 <= k <= classes:
        raise ConfigError(f"top_k={k}: the model has {classes} classes; choose 1 to {classes}")
    names = module.class_names or [str(i) for i in range(classes)]
    files, results, skipped = image_files(inputs), [], []
    for start in range(0, len(files), batch_size):
        read = []
        for path in files[start : start + batch_size]:
            try:
                read.append((path, read_image(path, net["in_channels"], net["image_size"])))
            except ValueError as err:
                skipped.append({"file": str(path), "error": str(err)})
        if not read:
            continue
        probs, indices = top_k(module, torch.stack([image for _, image in read]), k)
        for (path, _), p, i in zip(read, probs.tolist(), indices.tolist(), strict=True):
            top = [
                {"label": names[c], "index": c, "probability": q} for q, c in zip(p, i, strict=True)
            ]
            results.append({"file": str(path), "top": top})
    return results, skipped
