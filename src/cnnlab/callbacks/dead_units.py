"""Dying ReLUs (the NIN lab report, the CNN tricks slides): the share of each activation
layer's units that output nothing above zero for any of a fixed set of training images."""

import csv
import io
from collections import Counter, defaultdict

import matplotlib.pyplot as plt
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from cnnlab.callbacks.publish import publish, run_dir
from cnnlab.files import write_text
from cnnlab.layers.activations import is_activation
from cnnlab.options import Images


@torch.no_grad()
def dead_units(model: nn.Module, net: nn.Module, images: torch.Tensor) -> list[dict]:
    """For each activation layer of ``net`` in the order the forward pass reaches it: its
    units (channels), how many never exceed 0 on ``images`` (at any position), and their share.
    ``model`` (which holds ``net``) is run in eval mode on the images, in batches of 256."""
    alive: dict[str, torch.Tensor] = {}
    kinds: dict[str, str] = {}
    calls: Counter[str] = Counter()  # per batch: a module called twice is two layers

    def recorder(name: str):
        def hook(module, inputs, output) -> None:
            calls[name] += 1
            if not isinstance(output, torch.Tensor) or output.ndim < 2:
                return
            key = name if calls[name] == 1 else f"{name}#{calls[name]}"
            positive = (output > 0).transpose(0, 1).flatten(1).any(1)
            alive[key] = alive[key] | positive if key in alive else positive
            kinds[key] = type(module).__name__

        return hook

    layers = [(n, m) for n, m in net.named_modules() if is_activation(m)]
    hooks = [m.register_forward_hook(recorder(n)) for n, m in layers]
    training = model.training
    model.eval()
    try:
        with torch.compiler.set_stance("force_eager"):
            for start in range(0, len(images), 256):
                calls.clear()
                model(images[start : start + 256])
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    rows = []
    for name, units in alive.items():
        dead = int((~units).sum())
        rows.append(
            {
                "layer": name,
                "type": kinds[name],
                "units": units.numel(),
                "dead": dead,
                "share": dead / units.numel(),
            }
        )
    return rows


class DeadUnits(Callback):
    """After every training epoch, ``dead_units`` of the first ``images`` training images (as
    loaded, not augmented): written to ``dead_units.csv`` (one row per epoch and layer) and
    logged as ``dead_units/share`` (over all layers' units); ``figures/dead_units.png`` (layers
    by epochs) when fitting ends."""

    observes_only = True  # leaves training as it was: not a setting (cnnlab.config.settings)

    def __init__(self, images: Images = 512) -> None:
        self.images = images
        self.rows: list[dict] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        datamodule = trainer.datamodule
        if datamodule is None:
            return
        x = datamodule.train_set.images[: self.images].to(pl_module.device)
        rows = dead_units(pl_module, pl_module.net, x)
        units = sum(r["units"] for r in rows)
        if units:
            share = sum(r["dead"] for r in rows) / units
            pl_module.log("dead_units/share", share)  # the same on every process
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        self.rows = [r for r in self.rows if r["epoch"] != epoch]  # a resumed epoch, redone
        self.rows += [{"epoch": epoch, **r} for r in rows]
        write_text(run_dir(trainer) / "dead_units.csv", _csv(self.rows))

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.rows:
            publish(trainer, dead_units_figure(self.rows), "dead_units")

    def state_dict(self) -> dict:
        return {"rows": self.rows}  # a resumed run's table goes on from the earlier epochs

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))


def _csv(rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, ["epoch", "layer", "type", "units", "dead", "share"])
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def dead_units_figure(rows: list[dict]) -> plt.Figure:
    """The dead share of each layer (columns, in forward order) at each epoch (rows)."""
    table: dict[int, dict[str, float]] = defaultdict(dict)
    layers: list[str] = []
    for r in rows:
        table[r["epoch"]][r["layer"]] = r["share"]
        if r["layer"] not in layers:
            layers.append(r["layer"])
    epochs = sorted(table)
    grid = [[table[e].get(layer, float("nan")) for layer in layers] for e in epochs]
    fig, ax = plt.subplots(figsize=(min(4 + 0.4 * len(layers), 20), 3 + 0.25 * len(epochs)))
    image = ax.imshow(grid, cmap="Reds", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="dead share")
    ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize=7)
    ax.set_yticks(range(len(epochs)), epochs, fontsize=7)
    ax.set(xlabel="activation layer", ylabel="epoch", title="units never active (output <= 0)")
    fig.tight_layout()
    return fig
