"""curves.png: how each recipe of a sweep learned, the mean over its seeds by epoch; a gap that
opens up between training and validation loss is over-fitting."""

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from cnnlab.files import atomic  # noqa: E402
from cnnlab.results.diagnosis import mixed  # noqa: E402
from cnnlab.results.table import label  # noqa: E402


def plot_curves(rows, shown: list[str], path: Path) -> None:
    """One line per row in each panel, labelled by the settings in ``shown``."""
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, row in enumerate(rows):
        series = [job.series for job in row.finished]
        name = label(row, shown) + (" [train mixed]" if mixed(row.settings) else "")
        color = f"C{i % 10}"
        val = "val/acc" if any("val/acc" in s for s in series) else "val_on_test/acc"
        _line(acc_ax, series, val, color, "-", name)
        _line(loss_ax, series, "train/loss", color, "-", name)
        _line(loss_ax, series, val.replace("acc", "loss"), color, "--", None)
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="training (solid) vs validation (dashed)")
    if acc_ax.get_lines():
        acc_ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _line(ax, series: list[dict], key: str, color: str, style: str, label: str | None) -> None:
    """The mean over jobs of ``key`` at each epoch every one of them logged."""
    curves = [s[key] for s in series if s.get(key)]
    if not curves:
        return
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    mean = [statistics.fmean(c[e] for c in curves) for e in epochs]
    ax.plot(epochs, mean, style, color=color, label=label)
