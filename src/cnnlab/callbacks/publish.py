"""Where a figure goes: a PNG in ``<run>/figures/``, and the run's TensorBoard and W&B logs."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402

from cnnlab.files import atomic  # noqa: E402


def run_dir(trainer) -> Path:
    """The run's directory (``paths.output_dir``, the Trainer's default_root_dir)."""
    return Path(trainer.default_root_dir)


@rank_zero_only
def publish(trainer, fig: plt.Figure, name: str) -> Path:
    """Save ``fig`` as ``<run>/figures/<name>.png`` (atomically), log it, and close it."""
    path = run_dir(trainer) / "figures" / f"{name}.png"
    try:
        with atomic(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(name, fig, trainer.global_step, close=False)
            elif isinstance(logger, WandbLogger):
                logger.log_image(key=f"figures/{name}", images=[str(path)])
    finally:
        plt.close(fig)
    return path


def wandb_loggers(trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
