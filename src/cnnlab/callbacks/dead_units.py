"""Dying ReLUs (the NIN lab report, the CNN tricks slides): the share of each activation
layer's units that output nothing above zero for any of a fixed set of training images."""

from collections import Counter, defaultdict

import matplotlib.pyplot as plt
import torch
from torch import nn

from cnnlab.callbacks.publish import Observer, csv_text, hooked, publish, run_dir
from cnnlab.files import write_text
from cnnlab.layers.activations import is_activation
from cnnlab.options import Images

COLUMNS = ["epoch", "layer", "type", "units", "dead", "share"]  # of dead_units.csv


def dead_units(model: nn.Module, net: nn.Module, images: torch.Tensor) -> list[dict]:
    """For each activation layer of ``net`` (inside ``model``) in the order the forward pass
    reaches it: its units (channels), how many never exceed 0 on ``images``, and their share."""
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

    with hooked(model, [(m, recorder(n)) for n, m in net.named_modules() if is_activation(m)]):
        for start in range(0, len(images), 256):
            calls.clear()
            model(images[start : start + 256])
    counts = {name: (units.numel(), int((~units).sum())) for name, units in alive.items()}
    return [
        {"layer": name, "type": kinds[name], "units": n, "dead": dead, "share": dead / n}
        for name, (n, dead) in counts.items()
    ]


class DeadUnits(Observer):
    """Each epoch, ``dead_units`` of the first ``images`` training images (not augmented) into
    ``dead_units.csv`` and ``dead_units/share``; ``figures/dead_units.png`` when fitting ends."""

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
        write_text(run_dir(trainer) / "dead_units.csv", csv_text(self.rows, COLUMNS))

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.rows:
            publish(trainer, dead_units_figure(self.rows), "dead_units")

    def state_dict(self) -> dict:
        return {"rows": self.rows}  # a resumed run's table goes on from the earlier epochs

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))


def dead_units_figure(rows: list[dict]) -> plt.Figure:
    """The dead share of each layer (columns, in forward order) at each epoch (rows)."""
    table: dict[int, dict[str, float]] = defaultdict(dict)
    for r in rows:
        table[r["epoch"]][r["layer"]] = r["share"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
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
