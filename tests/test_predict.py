"""src/predict.py: a checkpoint classifies ordinary image files as it was trained to."""

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.cifar import cifar10
from cnnlab.errors import ConfigError
from cnnlab.inference.predict import load_classifier, predict, read_image
from cnnlab.run.train import run

from conftest import FAST, ROOT, compose_cfg
from disk_formats import write_cifar10


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A base CNN trained one epoch on generated CIFAR-10 (named classes), and its data."""
    root = tmp_path_factory.mktemp("predict")
    write_cifar10(root / "data", per_batch=40, test=20)
    options = ["model=base_cnn", "data.dataset.verify=false", "trainer.max_epochs=1", *FAST]
    run(compose_cfg(root, options))
    return root / "run" / "checkpoints" / "best.ckpt", root / "data"


def test_a_folder_of_png_and_jpeg_files_is_classified_as_the_model_sees_them(trained, tmp_path):
    ckpt, data = trained
    images = cifar10(str(data), verify=False).test_images[:6]  # uint8 (6, 3, 32, 32)
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, image in enumerate(images):
        picture = Image.fromarray(image.permute(1, 2, 0).numpy())
        if i % 2:  # larger, not square, JPEG: resized and cropped back to 32x32
            picture.resize((64, 48)).save(folder / "more" / f"{i}.jpg")
        else:
            picture.save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    results, skipped = predict(ckpt, folder, k=3)
    assert [Path(s["file"]).name for s in skipped] == ["broken.png"]
    assert len(results) == 6
    module = load_classifier(ckpt)
    for item in results:
        expected = read_image(Path(item["file"]), 3, 32)
        with torch.no_grad():
            probs = module(expected[None]).softmax(1)[0]
        top = item["top"]
        assert top[0]["index"] == probs.argmax().item()
        assert top[0]["label"] == module.class_names[top[0]["index"]]
        assert [t["probability"] for t in top] == sorted(
            (t["probability"] for t in top), reverse=True
        )
        assert top[0]["probability"] == pytest.approx(probs.max().item(), abs=1e-6)
        assert sum(t["probability"] for t in top) <= 1 + 1e-6
    png = next(item for item in results if item["file"].endswith("0.png"))
    with torch.no_grad():  # a PNG of the right size is the image itself, pixel for pixel
        direct = module(images[:1]).softmax(1)[0]
    assert png["top"][0]["probability"] == pytest.approx(direct.max().item(), abs=1e-6)


def test_images_are_read_in_the_checkpoints_channels_and_size(tmp_path):
    colour = tmp_path / "colour.png"
    Image.new("RGB", (90, 30), (255, 0, 0)).save(colour)
    grey = read_image(colour, channels=1, size=28)
    assert grey.shape == (1, 28, 28) and grey.dtype == torch.uint8
    assert grey.float().mean().item() == pytest.approx(76, abs=1)  # PIL's L of pure red
    assert read_image(colour, channels=3, size=32).shape == (3, 32, 32)


@pytest.mark.parametrize("side", [15000, 10000])  # Pillow refuses the first, warns of the second
def test_a_decompression_bomb_is_skipped_and_the_others_classified(trained, tmp_path, side):
    ckpt, _ = trained
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (40, 40), (0, 90, 200)).save(folder / "fine.png")
    _write_png(folder / "bomb.png", side, side)  # 100-225 MB of pixels in a file of ~200 kB
    assert (folder / "bomb.png").stat().st_size < 1_000_000
    results, skipped = predict(ckpt, folder, k=1)
    assert [Path(r["file"]).name for r in results] == ["fine.png"]
    (bomb,) = skipped
    assert Path(bomb["file"]).name == "bomb.png"
    assert "pixels" in bomb["error"] and "decompression bomb" in bomb["error"]


def test_16_bit_images_are_scaled_to_8_bits_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really 16 bits
    read = read_image(tmp_path / "deep.png", channels=1, size=32)[0].numpy().astype(int)
    expected = np.rint(ramp / 257).astype(int)  # 65535 -> 255
    assert np.abs(read - expected).max() <= 1
    assert (read == 255).mean() < 0.01  # clipping made nearly all of it white
    assert read_image(tmp_path / "deep.png", channels=3, size=32).shape == (3, 32, 32)


def _write_png(path: Path, width: int, height: int) -> None:
    """A grey PNG of ``width`` x ``height`` black pixels, written a row at a time."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    pack = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    pixels = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_bad_input_is_one_line_and_exit_code_2(trained, tmp_path):
    ckpt, _ = trained
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(ConfigError, match="not a cnnlab checkpoint"):
        load_classifier(not_a_checkpoint)
    with pytest.raises(ConfigError, match="no such checkpoint"):
        load_classifier(tmp_path / "missing.ckpt")
    with pytest.raises(ConfigError, match="top_k=11: the model has 10 classes"):
        predict(ckpt, tmp_path, k=11)
    with pytest.raises(ConfigError, match="no such file or folder"):
        predict(ckpt, tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="^top_k=abc: expected an integer >= 1$"):
        predict(ckpt, tmp_path, k="abc")
    with pytest.raises(ConfigError, match="^device=bogus: expected one of cpu, cuda$"):
        predict(ckpt, tmp_path, device="bogus")  # named, not blamed on the checkpoint
    with pytest.raises(ConfigError, match="^inputs=3: expected a string or null$"):
        predict(ckpt, 3)
    command = [sys.executable, str(ROOT / "src" / "predict.py"), f"ckpt={ckpt}"]
    result = subprocess.run(
        [*command, f"inputs={not_a_checkpoint}", f"hydra.run.dir={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"cnnlab: error: inputs={not_a_checkpoint}: no readable image"
    )
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_the_command_writes_csv_and_json(trained, tmp_path):
    ckpt, data = trained
    image = cifar10(str(data), verify=False).test_images[0]
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "cat.png")
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "src" / "predict.py"), f"ckpt={ckpt}"]
    result = subprocess.run(
        [*command, f"inputs={tmp_path / 'cat.png'}", "top_k=2", f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((out / "predictions.json").read_text())
    (item,) = written["predictions"]
    assert len(item["top"]) == 2 and written["skipped"] == []
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,rank,label,index,probability" and len(rows) == 3
    assert rows[1].split(",")[2] == item["top"][0]["label"]
