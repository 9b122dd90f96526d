"""The GPU check's parts: each measures one thing and returns its figures as a dict."""

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.gpu.report import busy_seconds
from benchmarks.gpu.sizes import QUIET, ROOT, Sizes


def gpu_tests(out: Path, sizes: Sizes, images: Path) -> dict[str, Any]:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"not_run": "pytest is not installed here"}
    xml = out / "gpu-tests.xml"
    files = [
        str(p) for p in sorted((ROOT / "tests").glob("test_*.py")) if "mark.gpu" in p.read_text()
    ][: sizes.gpu_test_files]
    command = ["-m", "pytest", "-m", "gpu", "-o", "addopts=", "-p", "no:cacheprovider", "-q"]
    xml.unlink(missing_ok=True)  # pytest's failing tests are results, not a failed part
    done = _python([*command, f"--junitxml={xml}", *files], timeout=1200, check=False)
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
    from benchmarks import speed as bench

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
    from benchmarks import data_path as bench_data
    from benchmarks import speed as bench

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
            # On the CPU, GPU 0 is a stand-in id (CUDA finds no device under it).
            **({"CUDA_VISIBLE_DEVICES": "stand-in"} if sizes.toy else {}),
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


def nin_epoch(out: Path, sizes: Sizes, images: Path) -> dict[str, Any]:
    from benchmarks import speed as bench

    base = ["experiment=nin_activation_bn_grid", "data=fake", f"trainer={sizes.trainer}", *QUIET]
    base += sizes.nin_epoch
    with tempfile.TemporaryDirectory() as tmp:
        batch = bench.compose(base, tmp).data.batch_size
    epochs = {}
    for compiled in (False, True):  # the second epoch of two (the first compiles)
        overrides = [*base, f"compile={str(compiled).lower()}"]
        images_per_s, _ = bench.run_cnnlab(overrides, 2, sizes.nin_epoch_batches)
        seconds = sizes.nin_epoch_batches * batch / images_per_s
        epochs["compile" if compiled else "eager"] = round(seconds, 2)
    return {"epoch_s": epochs, "steps": sizes.nin_epoch_batches, "batch_size": batch}


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


def _python(
    args: list[str], timeout: float, check: bool = True, **env: str
) -> subprocess.CompletedProcess:
    """A Python child of this one, which imports cnnlab from this source tree (and whatever
    --wheels added), run from the repository's root, with ``env`` added to its environment;
    ``check``: a failure raises."""
    env = {**os.environ, **env}
    paths = [
        str(ROOT / "src"),
        str(ROOT),
        *filter(None, env.get("PYTHONPATH", "").split(os.pathsep)),
    ]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode}: {done.stderr.strip()[-1500:]}")
    return done
