"""The GPU check: what docs/benchmarks.md reports of a GPU, measured in one command.

    python src/gpu_check.py --out DIR [--fashion DIR] [--wheels DIR]   # one GPU, meant for < 8 min
    python src/gpu_check.py --out DIR --toy                              # any machine, toy sizes

Parts, each written to DIR/results.json and DIR/results.md as soon as it ends (a part that fails
records its error and the others still run, so a run cut short keeps what it measured):

1. ``gpu_tests``: the gpu-marked tests (pytest).
2. ``framework``: cnnlab's training path against a plain PyTorch loop (benchmarks.speed) under
   ``trainer=gpu`` for nin, base_cnn and resnet24, on CIFAR-sized images held in GPU memory.
3. ``data_path``: the batched data path against the per-image torchvision loader, per preset.
4. ``packing``: a 4-job NIN grid through ``hydra/launcher=gpus`` at ``jobs_per_gpu`` 1, 2, 4:
   jobs per hour, and the training throughput of the shared GPU against one job alone.
5. ``nin_epoch``: NIN's epoch at the NIN lab report's setting (``nin_activation_bn_grid``: batch
   128, 391 steps, bf16), without and with ``compile``; with 4., the projected wall time of that
   report's 10-run, 164-epoch grid.
6. ``fashion``: ``experiment=fashion_base_cnn`` (a network under 5M parameters) on the real
   Fashion-MNIST files: test accuracy and time.

``--toy`` runs every part on the CPU at sizes that take a couple of minutes (a test does, so that
the check cannot rot); its figures mean nothing.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu.parts import data_path, fashion, framework, gpu_tests, nin_epoch, packing
from benchmarks.gpu.report import markdown, projection
from benchmarks.gpu.sizes import TOY, Sizes
from cnnlab.files import write_json, write_text

PARTS = {f.__name__: f for f in (gpu_tests, framework, data_path, packing, nin_epoch, fashion)}


def machine() -> dict[str, Any]:
    import lightning

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "lightning": lightning.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python src/gpu_check.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json/.md")
    parser.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--toy", action="store_true", help="toy sizes, on whatever device")
    parser.add_argument("--only", nargs="+", choices=list(PARTS), help="these parts alone")
    parser.add_argument("--wheels", type=Path, help="(read by src/gpu_check.py)")
    args = parser.parse_args(argv)
    args.out, args.fashion = args.out.resolve(), args.fashion.resolve()  # jobs run from the root
    if args.toy:  # on the CPU, also where there is a GPU (set before CUDA starts)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif not torch.cuda.is_available():
        parser.error("no CUDA device here; --toy runs the same parts at toy sizes on the CPU")
    sizes = TOY if args.toy else Sizes()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "toy": args.toy, "parts": {}}
    saved = args.out / "results.json"
    if args.only and saved.is_file():  # the other parts' results stay
        results["parts"] = json.loads(saved.read_text()).get("parts", {})
    for name in args.only or PARTS:
        print(f"gpu check: {name} ...", flush=True)
        started = time.perf_counter()
        try:
            found = PARTS[name](args.out, sizes, args.fashion)
        except Exception as err:  # recorded; the other parts still run
            found = {"error": f"{type(err).__name__}: {err}"[:3000]}
        results["parts"][name] = {**found, "seconds": round(time.perf_counter() - started, 1)}
        results["projection"] = projection(results["parts"])
        write_json(saved, results)
        write_text(args.out / "results.md", markdown(results))
    print(markdown(results))
    return int(any("error" in part for part in results["parts"].values()))
