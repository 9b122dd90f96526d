"""A run's own learning curves: loss, accuracy and learning rate by epoch (the CNN tricks
slides and the ResNet report read over-fitting from the gap between training and validation)."""

import logging

import matplotlib.pyplot as plt

from cnnlab.callbacks.publish import Observer, publish, run_dir
from cnnlab.files import epoch_series

log = logging.getLogger(__name__)


class RunCurves(Observer):
    """``figures/curves.png`` when fitting ends, from the run's CSV log (``csv/metrics.csv``,
    which holds every epoch, also those of an earlier attempt a resumed run went on from)."""

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.save()  # the CSV logger writes its rows in batches
        series = epoch_series(run_dir(trainer))
        if not series.get("train/loss"):
            log.warning("no curves: the run has no CSV log with epochs in it (logger=csv)")
            return
        mixed = getattr(trainer.datamodule, "mixup", None) is not None
        publish(trainer, curves_figure(series, mixed), "curves")


def curves_figure(series: dict[str, dict[int, float]], mixed: bool = False) -> plt.Figure:
    """Loss and accuracy (training solid, validation dashed) and the learning rate(s); ``mixed``
    labels the training curves as the mixed batches', not comparable with validation's."""
    val = "val" if "val/acc" in series else "val_on_test"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric in zip(axes, ("loss", "acc"), strict=False):
        for stage, style in (("train", "-"), (val, "--")):
            points = series.get(f"{stage}/{metric}", {})
            label = "train (mixed)" if stage == "train" and mixed else stage
            if points:
                ax.plot(*zip(*sorted(points.items()), strict=True), style, label=label)
        ax.set(xlabel="epoch", title=metric)
        ax.legend()
    rates = {key: points for key, points in series.items() if key.startswith("lr-")}
    for key, points in rates.items():
        axes[2].plot(*zip(*sorted(points.items()), strict=True), label=key.removeprefix("lr-"))
    axes[2].set(xlabel="epoch", title="learning rate")
    if rates:
        axes[2].legend()
    fig.tight_layout()
    return fig
