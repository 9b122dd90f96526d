"""The GPU check: what docs/benchmarks.md reports of a GPU, measured in one command.

    python src/gpu_check.py --out DIR [--fashion DIR] [--wheels DIR]   # one GPU, ~8 minutes
    python src/gpu_check.py --out DIR --toy                              # any machine, toy sizes

Parts, each written to DIR/results.json and DIR/results.md as soon as it ends (a part that fails
records its error and the others still run, so a run cut short keeps what it measured):

1. ``gpu_tests``: the gpu-marked tests (pytest).
2. ``framework``: cnnlab's training path against a plain PyTorch loop (cnnlab.bench) under
   ``trainer=gpu`` for nin, base_cnn and resnet24, on CIFAR-sized images held in GPU memory.
3. ``data_path``: the batched data path against the per-image torchvision loader, per preset.
4. ``packing``: a 4-job NIN grid through ``hydra/launcher=gpus`` at ``jobs_per_gpu`` 1, 2, 4:
   jobs per hour, and the training throughput of the shared GPU against one job alone.
5. ``seed002``: NIN's epoch at seed 002's setting (batch 128, 391 steps, bf16), without and with
   ``compile``; with 4., the projected wall time of seed 002's 10-run, 164-epoch grid.
6. ``fashion``: ``experiment=fashion_base_cnn`` (a network under 5M parameters) on the real
   Fashion-MNIST files: test accuracy and time.

``--toy`` runs every part on the CPU at sizes that take a couple of minutes (a test does, so that
the check cannot rot); its figures mean nothing.
"""

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from cnnlab.files import write_json, write_text
from cnnlab.gpucheck_report import busy_seconds, markdown, projection

ROOT = Path(__file__).resolve().parents[2]
QUIET = [
    f"~callbacks.{name}"
    for name in ("progress_bar", "model_summary", "confusion_matrix", "predictions", "curves")
] + ["~callbacks.filters", "~callbacks.augment_examples"]


@dataclass(frozen=True)
class Sizes:
    toy: bool = False
    trainer: str = "gpu"
    bench: list[str] = field(default_factory=list)  # the bench's own data: 4,300 fake images
    rounds: int = 2
    epochs: int = 3
    batches: int = 30
    data_batches: int = 50
    workers: int = 8  # of the per-image loader
    grid_jobs: int = 4
    packing: tuple[int, ...] = (1, 2, 4)
    # seed 002's runs in small: no validation split, 2 epochs of 40,000 images
    grid: list[str] = field(
        default_factory=lambda: ["data.dataset.train_size=40000", "trainer.max_epochs=2"]
    )
    seed002_batches: int = 391
    seed002: list[str] = field(default_factory=lambda: ["data.dataset.train_size=50000"])
    fashion: list[str] = field(default_factory=list)


TINY = ["data.image_size=16", "data.batch_size=16"]
TOY = Sizes(
    toy=True,
    trainer="cpu",
    bench=[*TINY, "data.dataset.train_size=200"],
    rounds=1,
    epochs=2,
    batches=2,
    data_batches=2,
    workers=0,
    grid_jobs=2,
    packing=(1, 2),
    grid=[*TINY, "data.dataset.train_size=64", "trainer.max_epochs=1"],
    seed002_batches=2,
    seed002=[*TINY, "data.dataset.train_size=64"],
    fashion=["data.train_subset=500", "data.test_subset=200", "trainer.max_epochs=1"],
)


def gpu_tests(out: Path, sizes: Sizes, images: Path) -> dict[str, Any]:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"not_run": "pytest is not installed here"}
    xml = out / "gpu-tests.xml"
    files = [
        str(p) for p in sorted((ROOT / "tests").glob("test_*.py")) if "mark.gpu" in p.read_text()
    ]
    command = ["-m", "pytest", "-m", "gpu", "-o", "addopts=", "-p", "no:cacheprovider", "-q"]
    xml.unlink(missing_ok=True)
    done = _python([*command, f"--junitxml={xml}", *files], timeout=1200)
    if not xml.is_file():
        raise RuntimeError(f"pytest wrote no report: {(done.stdout + done.stderr)[-1500:]}")
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    failed = [
        f"{case.get('classname')}.{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    total, skipped = int(suite.get("tests")), int(suite.get("skipped"))
    return {
        "tests": total,
        "passed": total - skipped - len(failed),
        "skipped": skipped,
        "failed": failed,
        "exit_status": done.returncode,
    }


def framework(out: Path, sizes: Sizes, images: Path) -> dict[str, Any]:
    from cnnlab import bench

    models = {}
    for model in ("nin", "base_cnn", "resnet24"):
        overrides = bench.with_defaults(
            [f"trainer={sizes.trainer}", f"model={model}", *sizes.bench]
        )
        rows = list(bench.rounds(overrides, sizes.epochs, sizes.batches, sizes.rounds))
        models[model] = {
            "cnnlab_img_s": [round(ours) for ours, _, _ in rows],
            "raw_img_s": [round(raw) for _, raw, _ in rows],
            "ratio": round(statistics.median(ours / raw for ours, raw, _ in rows), 3),
        }
    shared = bench.with_defaults([f"trainer={sizes.trainer}", *sizes.bench])
    return {"models": models, "overrides": " ".join(shared)}


def data_path(out: Path, sizes: Sizes, images: Path) -> dict[str, Any]:
    from cnnlab import bench, bench_data

    overrides = bench.with_defaults(["data.dataset.train_size=600"] if sizes.toy else [])
    rows = bench_data.data_path(overrides, sizes.data_batches, sizes.workers)
    return {
        "presets": {
            preset: {
                "batched_img_s": round(fast),
                "per_image_img_s": None if math.isnan(slow) else round(slow),
                "speedup": None if math.isnan(slow) else round(fast / slow, 2),
            }
            for preset, fast, slow in rows
        },
        "per_image_workers": sizes.workers,
    }


def packing(out: Path, sizes: Sizes, images: Path) -> dict[str, Any]:
    """The grid's jobs on one GPU (device 0; on the CPU a stand-in id), jobs_per_gpu at a time.
    Throughput against one job alone: the time during which some job ran, one job at a time,
    over that time at this level (the same work both ways). Moments when no job runs (a process
    starting) are left out: a real grid's jobs run for hours, and start-up is not what packing
    gains."""
    shutil.rmtree(out / "packing", ignore_errors=True)  # a rerun would find them finished
    levels = {}
    seeds = ",".join(str(i + 1) for i in range(sizes.grid_jobs))
    for jobs_per_gpu in sizes.packing:
        sweep = out / "packing" / f"jobs_per_gpu_{jobs_per_gpu}"  # no "=": Hydra would parse it
        started = time.perf_counter()
        _python(
            [
                str(ROOT / "src" / "train.py"),
                "-m",
                "hydra/launcher=gpus",
                "hydra.launcher.devices=[0]",
                f"hydra.launcher.jobs_per_gpu={jobs_per_gpu}",
                f"hydra.sweep.dir={sweep}",
                "model=nin",
                "data=fake",
                "data.val_split=0",
                f"trainer={sizes.trainer}",
                f"seed={seeds}",
                *QUIET,
                *sizes.grid,
            ],
            timeout=1800,
        )
        wall = time.perf_counter() - started
        records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
        if len(records) != sizes.grid_jobs or any(r["status"] != "finished" for r in records):
            raise RuntimeError(f"jobs_per_gpu={jobs_per_gpu}: not every job finished ({sweep})")
        spans = [(_seconds(r["started_at"]), _seconds(r["finished_at"])) for r in records]
        levels[jobs_per_gpu] = {
            "wall_s": round(wall, 1),
            "jobs_per_hour": round(sizes.grid_jobs * 3600 / wall, 1),
            "busy_s": round(busy_seconds(spans), 2),
            "mean_fit_s": round(statistics.mean(r["wall_time_s"] for r in records), 2),
        }
    alone = levels[min(levels)]["busy_s"]
    for row in levels.values():
        row["throughput_vs_one_job"] = round(alone / row["busy_s"], 2)
    return {"jobs": sizes.grid_jobs, "levels": levels, "overrides": " ".join(sizes.grid)}


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def seed002(out: Path, sizes: Sizes, images: Path) -> dict[str, Any]:
    from cnnlab import bench

    base = ["experiment=seed002_nin_grid", "data=fake", f"trainer={sizes.trainer}", *QUIET]
    base += sizes.seed002
    with tempfile.TemporaryDirectory() as tmp:
        batch = bench.compose(base, tmp).data.batch_size
    epochs = {}
    for compiled in (False, True):  # the second epoch of two (the first compiles)
        overrides = [*base, f"compile={str(compiled).lower()}"]
        images_per_s, _ = bench.run_cnnlab(overrides, 2, sizes.seed002_batches)
        seconds = sizes.seed002_batches * batch / images_per_s
        epochs["compile" if compiled else "eager"] = round(seconds, 2)
    return {"epoch_s": epochs, "steps": sizes.seed002_batches, "batch_size": batch}


def fashion(out: Path, sizes: Sizes, images: Path) -> dict[str, Any]:
    if not sorted(images.glob("*-idx*-ubyte.gz")):
        return {"not_run": f"no Fashion-MNIST .gz files in {images}"}
    run_dir = out / "fashion"
    shutil.rmtree(run_dir, ignore_errors=True)  # a rerun's: "already holds a run"
    started = time.perf_counter()
    _python(
        [
            str(ROOT / "src" / "train.py"),
            "experiment=fashion_base_cnn",
            f"trainer={sizes.trainer}",
            f"data.dataset.root={images}",
            f"hydra.run.dir={run_dir}",
            *QUIET,
            *sizes.fashion,
        ],
        timeout=1200,
    )
    record = json.loads((run_dir / "metrics.json").read_text())
    return {
        "test_acc": record["test_acc"],
        "params": record["params"],
        "epochs": record["epochs"],
        "fit_s": record["wall_time_s"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


PARTS = {f.__name__: f for f in (gpu_tests, framework, data_path, packing, seed002, fashion)}


def _python(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """A Python child of this one, which imports cnnlab from this source tree (and whatever
    --wheels added), run from the repository's root."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0 and args[:2] != ["-m", "pytest"]:  # pytest's failures are results
        raise RuntimeError(f"exit status {done.returncode}: {done.stderr.strip()[-1500:]}")
    return done


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
