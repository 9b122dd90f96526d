"""Image files as uint8 tensors of a model's size and channels: predict.py and ``image_folder``
read them alike, so that a model classifies a photo exactly as it saw its training images."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from cnnlab.errors import ConfigError, first_line

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


def image_files(path: str | Path) -> list[Path]:
    """``path`` itself, or every file under the folder ``path`` (sorted, hidden ones aside)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"inputs={path}: no such file or folder")
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """uint8 (channels, size, size): grey or RGB, the shorter side resized (antialiased), the
    centre square cropped; ValueError if unreadable or over Pillow's pixel limit (a bomb)."""
    try:
        with Image.open(path) as image:  # (reads the header only: the size is checked)
            # Pillow only warns of one up to twice its limit; checked here, not by turning the
            # warning into an error: the warnings filter is not thread-safe (image_folder reads
            # files in threads), and the same file would be read one run and skipped the next.
            limit = Image.MAX_IMAGE_PIXELS
            if limit and image.width * image.height > limit:
                raise Image.DecompressionBombError(
                    f"{image.width}x{image.height} pixels, more than Pillow's limit of {limit}: "
                    "a possible decompression bomb"
                )
            image = _eight_bits(image).convert("L" if channels == 1 else "RGB")
    except UNREADABLE as err:
        raise ValueError(first_line(err)) from None
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
