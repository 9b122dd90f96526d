"""The network layer by layer, as the Keras hyper-parameter slides' tables list it."""

import torch
from lightning.pytorch.callbacks import ModelSummary
from torch import nn

from cnnlab.callbacks.publish import hooked, run_dir
from cnnlab.files import write_text


def layer_table(net: nn.Module, input_shape: tuple[int, ...]) -> str:
    """A text table of each layer with weights or no sub-layers (but Identity): name and type,
    output shape for one ``input_shape`` (C, H, W) image, weights and their share of the total."""
    shapes: dict[nn.Module, str] = {}

    def record(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            shapes[module] = str(tuple(output.shape[1:]))  # per image, as Keras prints (None, ...)

    rows = [(n, m) for n, m in net.named_modules() if _is_row(m)]
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    with hooked(net, [(m, record) for _, m in rows]):
        net(torch.zeros(1, *input_shape, device=device))
    total = sum(p.numel() for p in net.parameters())
    lines = [f"{'Layer (type)':<44}{'Output shape':<20}{'Param #':>12}{'% of total':>12}"]
    lines.append("=" * len(lines[0]))
    for name, module in rows:
        count = sum(p.numel() for p in module.parameters(recurse=False))
        share = f"{100 * count / total:.2f}%" if total else "-"
        label = f"{name} ({type(module).__name__})"
        lines.append(f"{label:<44}{shapes.get(module, '-'):<20}{count:>12,}{share:>12}")
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    lines += ["=" * len(lines[0]), f"Total params: {total:,} (trainable: {trainable:,})"]
    return "\n".join(lines) + "\n"


def _is_row(module: nn.Module) -> bool:
    if isinstance(module, nn.Identity):  # norm=none's placeholder: not a layer
        return False
    return not any(module.children()) or any(module.parameters(recurse=False))


class LayerSummary(ModelSummary):
    """Prints ``layer_table`` of the network when fitting starts and writes it to
    ``<run>/model_summary.txt``. A ModelSummary, so Lightning adds no summary of its own."""

    observes_only = True  # leaves training as it was: not a setting (cnnlab.config.settings)

    def __init__(self) -> None:
        super().__init__(max_depth=-1)

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        table = layer_table(pl_module.net, pl_module.image_shape)
        print(table, end="")
        write_text(run_dir(trainer) / "model_summary.txt", table)
