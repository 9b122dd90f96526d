"""The test set's confusion matrix, per-class accuracy and most-confused pairs (the Keras
hyper-parameter slides and the ResNet report read their models this way)."""

import matplotlib.pyplot as plt
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from cnnlab.callbacks.publish import Observer, publish, run_dir, wandb_loggers
from cnnlab.files import write_text
from cnnlab.options import Natural


class ConfusionMatrix(Observer):
    """The test set's confusion matrix: ``figures/confusion_matrix.png`` (rows normalised),
    ``confusion_matrix.csv`` (counts), ``test_classes.md`` (``class_report``), and on W&B."""

    def __init__(self, pairs: Natural = 10) -> None:
        self.pairs = pairs
        self.matrix: MulticlassConfusionMatrix | None = None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        classes = pl_module.num_classes
        # validate_args would read the labels on the host at every step
        self.matrix = MulticlassConfusionMatrix(classes, validate_args=False).to(pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.matrix.update(outputs, batch[1])

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        counts = self.matrix.compute().cpu()  # summed over processes under DDP
        if not trainer.is_global_zero:
            return
        names = class_names(pl_module, len(counts))
        folder = run_dir(trainer)
        lines = [",".join(["true\\predicted", *names])]
        for name, row in zip(names, counts.tolist(), strict=True):
            lines.append(",".join([name, *map(str, row)]))
        write_text(folder / "confusion_matrix.csv", "\n".join(lines) + "\n")
        write_text(folder / "test_classes.md", class_report(counts, names, self.pairs))
        publish(trainer, confusion_figure(counts, names), "confusion_matrix")
        for logger in wandb_loggers(trainer):
            _log_to_wandb(logger, counts, names)


def class_names(pl_module, count: int) -> list[str]:
    names = getattr(pl_module, "class_names", None)
    return list(names) if names and len(names) == count else [str(i) for i in range(count)]


def class_report(counts: torch.Tensor, names: list[str], pairs: int) -> str:
    """Markdown: accuracy of each class, then the most frequent (true, predicted) mistakes."""
    per_class = counts.sum(1)
    lines = ["| class | images | correct | accuracy |", "|---|---:|---:|---:|"]
    for i, name in enumerate(names):
        n, right = int(per_class[i]), int(counts[i, i])
        accuracy = f"{100 * right / n:.2f}%" if n else "-"
        lines.append(f"| {name} | {n} | {right} | {accuracy} |")
    mistakes = counts.clone().fill_diagonal_(0)
    top = mistakes.flatten().argsort(descending=True)[:pairs]
    lines += ["", "Most-confused pairs:", ""]
    lines += ["| true | predicted as | images | share of the class |", "|---|---|---:|---:|"]
    for index in top.tolist():
        true, predicted = divmod(index, len(names))
        n = int(mistakes[true, predicted])
        if n == 0:
            break
        share = 100 * n / int(per_class[true])
        lines.append(f"| {names[true]} | {names[predicted]} | {n} | {share:.2f}% |")
    return "\n".join(lines) + "\n"


def confusion_figure(counts: torch.Tensor, names: list[str]) -> plt.Figure:
    share = counts.float() / counts.sum(1, keepdim=True).clamp(min=1)
    size = min(4 + 0.5 * len(names), 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if len(names) <= 20:  # beyond, labels and counts would not be legible
        ticks = range(len(names))
        ax.set_xticks(ticks, names, rotation=45, ha="right")
        ax.set_yticks(ticks, names)
        for i, row in enumerate(counts.tolist()):
            for j, n in enumerate(row):
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, n, ha="center", va="center", fontsize=8, color=color)
    ax.set(xlabel="predicted", ylabel="true", title="test set: confusion matrix")
    fig.tight_layout()
    return fig


def _log_to_wandb(logger, counts: torch.Tensor, names: list[str]) -> None:
    """W&B's own plots, which take (true, predicted) pairs: rebuilt from the counts."""
    import wandb

    classes = torch.arange(len(names))
    true = classes.repeat_interleave(counts.sum(1)).tolist()
    predicted = classes.repeat(len(names)).repeat_interleave(counts.flatten()).tolist()
    accuracy = counts.diagonal().float() / counts.sum(1).clamp(min=1)
    data = [[n, a] for n, a in zip(names, accuracy.tolist(), strict=True)]
    table = wandb.Table(columns=["class", "accuracy"], data=data)
    matrix = wandb.plot.confusion_matrix(y_true=true, preds=predicted, class_names=names)
    bars = wandb.plot.bar(table, "class", "accuracy", title="test accuracy by class")
    logger.experiment.log({"test/confusion_matrix": matrix, "test/class_accuracy": bars})
