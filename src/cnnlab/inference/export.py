"""A checkpoint as a TorchScript or ONNX file that runs without cnnlab, normalisation included
(input: float (N, C, H, W) in [0, 1], any batch size), checked against the checkpoint's outputs."""

from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.files import atomic
from cnnlab.inference.predict import load_classifier

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
TOLERANCE = 1e-4  # float32 logits, absolute and relative: kernels differ between runtimes


def export(ckpt: str | Path, fmt: str, output: str | Path | None = None) -> tuple[Path, float]:
    """Write ``ckpt``'s model as ``fmt`` to ``output`` (default: beside the checkpoint) and
    return the path and the largest difference from the checkpoint's logits on a test batch."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
    module = load_classifier(ckpt)
    model = nn.Sequential(module.preprocess, module.net).eval()  # what forward() does to floats
    shape = module.image_shape
    path = Path(output) if output else Path(ckpt).with_suffix(FORMATS[fmt])
    if path.is_dir():
        suffix = FORMATS[fmt]
        raise ConfigError(f"output={output}: a folder; give the file to write (model{suffix})")
    with atomic(path) as tmp:
        if fmt == "torchscript":
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(model, torch.rand(2, *shape)), str(tmp))
        else:
            torch.onnx.export(
                model,
                (torch.rand(2, *shape),),
                str(tmp),
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                dynamo=True,  # the default only from torch 2.9; the older exporter takes no Dim
                external_data=False,  # one file, weights inside
            )
        difference = _check(model, shape, tmp, fmt)  # another batch size than the traced one
    return path, difference


def _check(model: nn.Module, shape: tuple[int, ...], path: Path, fmt: str) -> float:
    images = torch.rand(5, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(images)
    if fmt == "torchscript":
        got = torch.jit.load(str(path))(images)
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    difference = (got - expected).abs().max().item()
    if not torch.allclose(got, expected, atol=TOLERANCE, rtol=TOLERANCE):
        raise RuntimeError(f"the {fmt} export differs from the checkpoint by {difference:.2e}")
    return difference
