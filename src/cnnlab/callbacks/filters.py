"""What the network and its inputs look like: the first layer's filters (the CNN tricks
slides) and a few training images before and after ``augment=`` (the ResNet report, fig. 10)."""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torchvision.utils import make_grid

from cnnlab.callbacks.publish import Observer, publish, show_image
from cnnlab.options import Count, Images


class FirstLayerFilters(Observer):
    """``figures/filters.png``: the tested first convolution's kernels, each scaled to [0, 1] on
    its own (colour for RGB inputs, else the mean over input channels in grey)."""

    def on_test_end(self, trainer, pl_module) -> None:
        conv = next((m for m in pl_module.net.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is None or not trainer.is_global_zero:
            return
        publish(trainer, filters_figure(conv.weight.detach().float().cpu()), "filters")


def filters_figure(weight: torch.Tensor) -> plt.Figure:
    """A grid of the kernels of a (out, in, k, k) weight."""
    kernels = weight if weight.shape[1] == 3 else weight.mean(1, keepdim=True)
    low = kernels.amin((1, 2, 3), keepdim=True)
    high = kernels.amax((1, 2, 3), keepdim=True)
    kernels = (kernels - low) / (high - low).clamp(min=1e-12)
    grid = make_grid(kernels, nrow=math.ceil(math.sqrt(len(kernels))), padding=1, pad_value=1)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"first layer: {weight.shape[0]} filters of {weight.shape[2]}x{weight.shape[3]}")
    fig.tight_layout()
    return fig


class AugmentExamples(Observer):
    """``figures/augment_examples.png``: the first ``images`` training images, ``draws`` rows of
    them augmented (and mixed), on a copy of the random state: the run draws as without it."""

    def __init__(self, images: Images = 8, draws: Count = 3) -> None:
        self.images, self.draws = images, draws

    def on_train_start(self, trainer, pl_module) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not trainer.is_global_zero:
            return
        x = datamodule.train_set.images[: self.images].to(pl_module.device).float() / 255
        labels = datamodule.train_set.labels[: self.images].to(pl_module.device)
        rows = [x]
        numpy_state = np.random.get_state()  # timm's mixup draws from numpy
        with torch.random.fork_rng(devices=[pl_module.device] if x.is_cuda else []):
            with torch.no_grad():
                for _ in range(self.draws):
                    out = datamodule.augment(x.clone())  # mixup works in place
                    if datamodule.mixup is not None and len(out) % 2 == 0:
                        out, _ = datamodule.mixup(out, labels)
                    rows.append(out)
        np.random.set_state(numpy_state)
        publish(trainer, augment_figure([r.cpu() for r in rows]), "augment_examples")


def augment_figure(rows: list[torch.Tensor]) -> plt.Figure:
    """One row per batch of (N, C, H, W) images in [0, 1]: the originals first."""
    n = len(rows[0])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.7 * len(rows)), squeeze=False)
    for r, batch in enumerate(rows):
        for i, ax in enumerate(axes[r]):
            show_image(ax, batch[i])
            ax.set(xticks=[], yticks=[])
        axes[r, 0].set_ylabel("original" if r == 0 else f"draw {r}", fontsize=8)
    fig.tight_layout()
    return fig
