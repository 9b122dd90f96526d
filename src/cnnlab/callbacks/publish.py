"""What the figure callbacks share: a figure published, a table as CSV, hooks on a network."""

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402
from torch import nn  # noqa: E402

from cnnlab.files import atomic  # noqa: E402


class Observer(Callback):
    """A callback that leaves training as it was: not a setting (cnnlab.config.settings)."""

    observes_only = True


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


def show_image(ax, image: torch.Tensor) -> None:
    """One (C, H, W) image in [0, 1]: grey for one channel, colour for three."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """``rows`` as CSV, a header of ``columns`` first."""
    text = io.StringIO()
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


@contextmanager
def hooked(
    model: nn.Module, hooks: list[tuple[nn.Module, Callable]], grad: bool = False
) -> Iterator[None]:
    """``model`` in eval mode (norms on a few images, no dropout), with gradients or not, run
    eagerly (hooks see a compiled network's layers; compiling for a few images does not pay),
    each forward hook on its module; all as it was afterwards."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(grad), torch.compiler.set_stance("force_eager"):
            yield
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
