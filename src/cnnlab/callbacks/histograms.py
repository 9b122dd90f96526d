"""How each layer's weights and gradients move during training (the ResNet report, fig. 12)."""

import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from cnnlab.callbacks.publish import Observer, publish, wandb_loggers
from cnnlab.options import Count


def kernels(net: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The convolution and dense kernels (parameters of two or more dimensions) by layer name;
    biases and norm scales are left out, as in the ResNet report's figures."""
    return {
        name.removesuffix(".weight"): p
        for name, p in net.named_parameters()
        if p.ndim >= 2 and p.requires_grad
    }


class WeightHistograms(Observer):
    """Histograms of each layer's kernel and last gradient on TensorBoard and W&B, every
    ``every_n_epochs`` epochs; ``figures/histograms.png`` of at most ``layers`` at the end."""

    def __init__(self, every_n_epochs: Count = 1, layers: Count = 12) -> None:
        self.every_n_epochs, self.layers = every_n_epochs, layers
        self.initial: dict[str, np.ndarray] = {}
        self.gradients: dict[str, torch.Tensor] = {}  # of the epoch's last step

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.initial = {n: _numpy(p) for n, p in self._chosen(pl_module).items()}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        """Keep the epoch's last gradients (unscaled, summed over processes): Lightning has
        dropped them by the time the epoch ends."""
        if trainer.is_global_zero and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            grads = kernels(pl_module.net).items()
            self.gradients = {n: p.grad.detach().clone() for n, p in grads if p.grad is not None}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        if not trainer.is_global_zero or (epoch + 1) % self.every_n_epochs:
            return
        values = {}
        for name, p in kernels(pl_module.net).items():
            values[f"weights/{name}"] = p.detach()
            if name in self.gradients:
                values[f"gradients/{name}"] = self.gradients[name]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for key, tensor in values.items():
                    logger.experiment.add_histogram(key, tensor.float().cpu(), epoch)
        for logger in wandb_loggers(trainer):
            import wandb

            histograms = {k: wandb.Histogram(_numpy(v)) for k, v in values.items()}
            logger.experiment.log({**histograms, "trainer/global_step": trainer.global_step})

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not self.initial:
            return
        rows = [
            (n, self.initial.get(n), _numpy(p), _numpy(self.gradients.get(n)))
            for n, p in self._chosen(pl_module).items()
        ]
        publish(trainer, histograms_figure(rows), "histograms")

    def _chosen(self, pl_module) -> dict[str, torch.nn.Parameter]:
        layers = kernels(pl_module.net)
        names = list(layers)
        if len(names) > self.layers:
            picks = np.linspace(0, len(names) - 1, self.layers).round().astype(int)
            names = [names[i] for i in sorted(set(picks))]
        return {n: layers[n] for n in names}


def _numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().float().flatten().cpu().numpy()


def histograms_figure(rows) -> plt.Figure:
    """One row per layer ``(name, initial weights, final weights, last gradient)``."""
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 1.8 * len(rows)), squeeze=False)
    for (name, initial, final, grad), (left, right) in zip(rows, axes, strict=True):
        if initial is not None:
            left.hist(initial, bins=60, alpha=0.5, color="grey", label="start")
        left.hist(final, bins=60, alpha=0.7, color="tab:blue", label="end")
        left.set_ylabel(name, fontsize=7)
        if grad is not None:
            right.hist(grad, bins=60, color="tab:orange")
    axes[0, 0].set_title("weights")
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].set_title("gradients (last step)")
    fig.tight_layout()
    return fig
