"""The GPU check's results as markdown: one table per part (cnnlab.gpucheck measures them)."""

from typing import Any

SEED002_RUNS, SEED002_EPOCHS = 10, 164  # seed 002's grid: 2x2x2, then leaky_relu and maxout


def projection(parts: dict[str, Any]) -> dict[str, Any] | None:
    """Seed 002's whole grid on one GPU: its runs x epochs x the faster epoch, divided by the
    best packing's gain in throughput over one job alone (1 where packing was not measured)."""
    epochs = parts.get("seed002", {}).get("epoch_s")
    if not epochs:
        return None
    how, epoch_s = min(epochs.items(), key=lambda item: item[1])
    levels = parts.get("packing", {}).get("levels") or {"1": {"throughput_vs_one_job": 1.0}}
    jobs_per_gpu, best = max(levels.items(), key=lambda item: item[1]["throughput_vs_one_job"])
    gain = best["throughput_vs_one_job"]
    hours = SEED002_RUNS * SEED002_EPOCHS * epoch_s / gain / 3600
    return {"hours": round(hours, 2), "epoch": how, "jobs_per_gpu": int(jobs_per_gpu), "gain": gain}


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# GPU check" + (" (toy sizes: the figures mean nothing)" if results.get("toy") else ""),
        "",
        ", ".join(f"{k} {v}" for k, v in machine.items() if v is not None),
    ]
    for name, part in results["parts"].items():
        lines += ["", f"## {name} ({part['seconds']} s)", ""]
        if "error" in part or "not_run" in part:
            kind = "error" if "error" in part else "not_run"
            lines.append(f"{kind.replace('_', ' ')}: {part[kind]}")
            continue
        lines += _TABLES[name](part)
    found = projection(results["parts"])
    if found:
        lines += [
            "",
            "## seed 002's grid, projected",
            "",
            f"{SEED002_RUNS} runs x {SEED002_EPOCHS} epochs x the {found['epoch']} epoch, at "
            f"jobs_per_gpu={found['jobs_per_gpu']} ({found['gain']}x one job's throughput): "
            f"**{found['hours']} h** on one GPU",
        ]
    return "\n".join(lines) + "\n"


def _gpu_tests(part: dict) -> list[str]:
    failed = ", ".join(part["failed"]) or "none"
    return [
        "| tests | passed | skipped | failed |",
        "|---|---|---|---|",
        f"| {part['tests']} | {part['passed']} | {part['skipped']} | {failed} |",
    ]


def _framework(part: dict) -> list[str]:
    rows = ["| model | cnnlab img/s | raw loop img/s | median ratio |", "|---|---|---|---|"]
    for model, row in part["models"].items():
        ours = ", ".join(f"{v:,}" for v in row["cnnlab_img_s"])
        raw = ", ".join(f"{v:,}" for v in row["raw_img_s"])
        rows.append(f"| `{model}` | {ours} | {raw} | **{row['ratio']}** |")
    return [*rows, "", part["overrides"]]


def _data_path(part: dict) -> list[str]:
    rows = ["| augment | batched img/s | per-image img/s | speed-up |", "|---|---|---|---|"]
    for preset, row in part["presets"].items():
        slow = "-" if row["per_image_img_s"] is None else f"{row['per_image_img_s']:,}"
        rows.append(f"| `{preset}` | {row['batched_img_s']:,} | {slow} | {row['speedup'] or '-'} |")
    return [*rows, "", f"per-image loader: {part['per_image_workers']} workers"]


def _packing(part: dict) -> list[str]:
    rows = [
        f"| jobs_per_gpu | {part['jobs']} jobs: wall s | jobs/hour | mean fit s "
        "| throughput vs one job |",
        "|---|---|---|---|---|",
    ]
    for k, row in part["levels"].items():
        rows.append(
            f"| {k} | {row['wall_s']} | {row['jobs_per_hour']} | {row['mean_fit_s']} | "
            f"{row['throughput_vs_one_job']} |"
        )
    return [*rows, "", f"each job: model=nin data=fake {part['overrides']}"]


def _seed002(part: dict) -> list[str]:
    epochs = part["epoch_s"]
    return [
        f"| epoch of {part['steps']} steps of {part['batch_size']} | eager | compile |",
        "|---|---|---|",
        f"| seconds | {epochs['eager']} | {epochs['compile']} |",
    ]


def _fashion(part: dict) -> list[str]:
    return [
        "| parameters | epochs | test accuracy | fit s | wall s |",
        "|---|---|---|---|---|",
        f"| {part['params']:,} | {part['epochs']} | {part['test_acc']:.4f} | {part['fit_s']} | "
        f"{part['wall_s']} |",
    ]


_TABLES = {
    "gpu_tests": _gpu_tests,
    "framework": _framework,
    "data_path": _data_path,
    "packing": _packing,
    "seed002": _seed002,
    "fashion": _fashion,
}
