"""Test images with the model's top-3 softmax probabilities (as the 79%→90% slides show them)."""

import math

import matplotlib.pyplot as plt

from cnnlab.callbacks.confusion import class_names
from cnnlab.callbacks.publish import Observer, publish, show_image
from cnnlab.options import Count, Images


class PredictionGrid(Observer):
    """``figures/predictions.png``: the first ``images`` test images with their ``top`` classes."""

    def __init__(self, images: Images = 16, top: Count = 3) -> None:
        self.images, self.top = images, top

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx != 0 or dataloader_idx != 0 or not trainer.is_global_zero:
            return
        images, labels = batch[0][: self.images], batch[1][: self.images]
        probs = outputs[: self.images].float().softmax(1).cpu()
        names = class_names(pl_module, probs.shape[1])
        fig = prediction_figure(images.float().cpu(), labels.cpu(), probs, names, self.top)
        publish(trainer, fig, "predictions")


def prediction_figure(images, labels, probs, names: list[str], top: int) -> plt.Figure:
    """Images in [0, 1] (N, C, H, W) in a grid, each with its label and top-``top`` classes."""
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.9 * rows), squeeze=False)
    best = probs.topk(min(top, probs.shape[1]), dim=1)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        show_image(ax, images[i])
        wrong = best.indices[i, 0] != labels[i]
        ranked = zip(best.values[i].tolist(), best.indices[i].tolist(), strict=True)
        guesses = [f"{names[c]} {100 * p:.0f}%" for p, c in ranked]
        title = "\n".join([f"true: {names[labels[i]]}", *guesses])
        ax.set_title(title, fontsize=8, color="red" if wrong else "black")
    fig.tight_layout()
    return fig
