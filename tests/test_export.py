"""src/export.py: TorchScript and ONNX files that compute what the checkpoint computes."""

import subprocess
import sys

import onnxruntime
import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.inference.export import TOLERANCE, export
from cnnlab.inference.predict import load_classifier
from cnnlab.run.train import run

from conftest import FAST, ROOT, compose_cfg


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A NIN (BN, dropout, pooling: what export must get right in eval mode) with computed
    mean/std, trained one epoch on random 16x16 images."""
    root = tmp_path_factory.mktemp("export")
    tiny = ["data=fake", "data.image_size=16", "data.dataset.train_size=64", "data.batch_size=16"]
    run(compose_cfg(root, [*tiny, "model=nin", "trainer.max_epochs=1", *FAST]))
    return root / "run" / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_export_gives_the_checkpoints_outputs_on_any_batch_size(fmt, checkpoint, tmp_path):
    path, difference = export(checkpoint, fmt, tmp_path / f"model.{fmt}")
    assert path.is_file() and difference <= TOLERANCE
    images = torch.rand(7, 3, 16, 16)  # neither the traced batch size (2) nor the checked one
    module = load_classifier(checkpoint)
    with torch.no_grad():
        expected = module(images)
    if fmt == "torchscript":
        got = torch.jit.load(str(path))(images)
    else:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    assert got.shape == (7, 10)
    assert torch.allclose(got, expected, atol=TOLERANCE, rtol=TOLERANCE)
    assert not torch.allclose(got, module.net(images), atol=1e-3)  # normalisation is inside


def test_an_unknown_format_is_one_line_and_exit_code_2(checkpoint, tmp_path):
    with pytest.raises(
        ConfigError, match="unknown format 'tflite'; choose from: torchscript, onnx"
    ):
        export(checkpoint, "tflite")
    folder = r"^output=.*: a folder; give the file to write \(model.pt\)$"
    with pytest.raises(ConfigError, match=folder):
        export(checkpoint, "torchscript", tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "src" / "export.py"),
            f"ckpt={tmp_path / 'none.ckpt'}",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"cnnlab: error: ckpt={tmp_path / 'none.ckpt'}: no such checkpoint file"
    )
    assert not (tmp_path / "out").exists()  # the refused export leaves no log directory
