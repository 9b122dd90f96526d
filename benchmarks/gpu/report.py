"""The GPU check's results as markdown, one table per part, and the figures made from them."""

from typing import Any

# The NIN lab report's grid (nin_activation_bn_grid): 2x2x2, then leaky_relu and maxout
NIN_GRID_RUNS, NIN_GRID_EPOCHS = 10, 164


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """How long at least one of the (start, end) spans was under way: their union's length."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def projection(parts: dict[str, Any]) -> dict[str, Any] | None:
    """The NIN lab report's grid on one GPU, at the packing that finishes it first: its runs go in
    waves of jobs_per_gpu (the last one smaller), each wave 164 epochs of the faster measured epoch
    divided by the throughput measured for that many jobs at once. Every run is costed as the
    measured one (NIN, ReLU, BN; maxout's are dearer, those without BN cheaper), and each run's
    start-up and final test are left out."""
    epochs = parts.get("nin_epoch", {}).get("epoch_s")
    if not epochs:
        return None
    how, epoch_s = min(epochs.items(), key=lambda item: item[1])
    gains = {
        int(k): row["throughput_vs_one_job"]
        for k, row in parts.get("packing", {}).get("levels", {}).items()
    }
    gains.setdefault(1, 1.0)
    best = None
    for k in gains:
        waves = [k] * (NIN_GRID_RUNS // k) + ([NIN_GRID_RUNS % k] if NIN_GRID_RUNS % k else [])
        if all(w in gains for w in waves):
            hours = sum(NIN_GRID_EPOCHS * epoch_s * w / gains[w] for w in waves) / 3600
            if best is None or hours < best["hours"]:
                best = {"hours": round(hours, 3), "jobs_per_gpu": k, "gain": gains[k]}
    return {**best, "epoch": how, "epoch_s": epoch_s, "packing_measured": len(gains) > 1}


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
    found = results.get("projection")
    if found:
        packed = f"jobs_per_gpu={found['jobs_per_gpu']} ({found['gain']}x one job's throughput)"
        if not found["packing_measured"]:
            packed = "one job at a time (packing not measured)"
        lines += [
            "",
            "## the NIN lab report's grid, projected",
            "",
            f"{NIN_GRID_RUNS} runs x {NIN_GRID_EPOCHS} epochs of {found['epoch_s']} s (the "
            f"{found['epoch']} epoch), {packed}: **{found['hours']} h** on one GPU",
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
        f"| jobs_per_gpu | {part['jobs']} jobs: wall s | jobs/hour | some job running s "
        "| mean fit s | throughput vs one job |",
        "|---|---|---|---|---|---|",
    ]
    for k, row in part["levels"].items():
        rows.append(
            f"| {k} | {row['wall_s']} | {row['jobs_per_hour']} | {row['busy_s']} | "
            f"{row['mean_fit_s']} | {row['throughput_vs_one_job']} |"
        )
    return [*rows, "", f"each job: model=nin data=fake data.val_split=0 {part['overrides']}"]


def _nin_epoch(part: dict) -> list[str]:
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
    "nin_epoch": _nin_epoch,
    "fashion": _fashion,
}
