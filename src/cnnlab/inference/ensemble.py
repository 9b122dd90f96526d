"""Ensembles (the CNN tricks slides) and test-time augmentation, and the three ways of choosing
the checkpoints: given, the best jobs of a sweep, the snapshots of one run."""

import re
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.files import read_record
from cnnlab.training.module import Classifier


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images moved down by ``dy`` and right by ``dx`` pixels, the edge reflected into the gap."""
    s = max(abs(dy), abs(dx))
    padded = F.pad(x, (s, s, s, s), mode="reflect")
    h, w = x.shape[-2:]
    return padded[..., s - dy : s - dy + h, s - dx : s - dx + w]


def tta_views(x: torch.Tensor, flip: bool, shift: int) -> list[torch.Tensor]:
    """The images as they are first; moved by (+shift, +shift) and (-shift, -shift) pixels
    (airbench's translations) if ``shift``; and each of those mirrored left-right if ``flip``."""
    views = [x]
    if shift:
        views += [translate(x, shift, shift), translate(x, -shift, -shift)]
    if flip:
        views += [v.flip(-1) for v in views]
    return views


class Ensemble(L.LightningModule):
    """The members' softmax outputs averaged, each member's first over ``tta_views`` if ``tta``.

    ``forward`` gives the log of the mean probabilities, which the callbacks' softmax recovers."""

    def __init__(self, members: list[Classifier], tta: dict | None = None) -> None:
        super().__init__()
        first = members[0]
        for member in members[1:]:
            for key in ("image_shape", "num_classes"):
                if getattr(member, key) != getattr(first, key):
                    raise ConfigError(
                        f"the checkpoints differ in {key} ({getattr(first, key)} and "
                        f"{getattr(member, key)}): an ensemble's members must classify the "
                        "same images into the same classes"
                    )
        # What the figure callbacks read of a model, as a Classifier has them.
        self.image_shape, self.num_classes = first.image_shape, first.num_classes
        self.members = nn.ModuleList(members)
        self.class_names = members[0].class_names
        self.tta = tta
        count = len(members) + 1  # each member, and the ensemble (last)
        # (plain, tta) x members: images right, summed NLL. Plain sums rather than torchmetrics
        # objects: Lightning resets a logged metric at the epoch's end, before the table is read.
        self.correct = torch.zeros(2, count, dtype=torch.long)
        self.losses = torch.zeros(2, count, dtype=torch.float64)
        self.seen = 0

    def member_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(members, N, classes) softmax outputs of the images as given, and averaged over TTA."""
        views = tta_views(x, **self.tta) if self.tta else [x]
        plain, averaged = [], []
        for member in self.members:
            probs = [member(view).float().softmax(1) for view in views]
            plain.append(probs[0])
            averaged.append(torch.stack(probs).mean(0))
        return torch.stack(plain), torch.stack(averaged)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_probabilities(x)[1].mean(0).clamp(min=1e-12).log()

    def on_test_epoch_start(self) -> None:
        self.correct.zero_()
        self.losses.zero_()
        self.seen = 0

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        plain, averaged = self.member_probabilities(images)
        for row, probs in enumerate((plain, averaged)):
            every = torch.cat([probs, probs.mean(0, keepdim=True)])  # members, then ensemble
            right = every.argmax(2) == labels
            picked = every.gather(2, labels.expand(len(every), -1)[..., None])[..., 0]
            self.correct[row] += right.sum(1).cpu()
            self.losses[row] += -picked.clamp(min=1e-12).log().sum(1).double().cpu()
        self.seen += len(labels)
        log_probs = averaged.mean(0).clamp(min=1e-12).log()
        n = len(labels)  # Lightning weights each batch's mean by it: the epoch's exact means
        self.log("test/acc", (log_probs.argmax(1) == labels).float().mean(), batch_size=n)
        self.log("test/loss", F.nll_loss(log_probs, labels), batch_size=n)
        return log_probs

    def member_results(self) -> list[dict]:
        """One row per member, then the ensemble: accuracy and loss without and with TTA."""
        results = []
        for i in range(len(self.members) + 1):
            row = {"acc": self.correct[0, i].item() / self.seen}
            row["loss"] = self.losses[0, i].item() / self.seen
            if self.tta:
                row["acc_tta"] = self.correct[1, i].item() / self.seen
                row["loss_tta"] = self.losses[1, i].item() / self.seen
            results.append(row)
        return results


def sweep_members(sweep: Path, k: int) -> list[tuple[str, Path]]:
    """The ``k`` finished jobs under ``sweep`` with the highest validation accuracy (never the
    test's: choosing by it would overstate the ensemble), as (name, best.ckpt)."""
    if not sweep.is_dir():
        raise ConfigError(f"sweep={sweep}: no such directory")
    if k < 1:
        raise ConfigError(f"top_k={k}: must be at least 1")
    jobs = []
    for record in sorted(sweep.glob("**/metrics.json")):
        metrics = read_record(record) or {}
        ckpt = record.parent / "checkpoints" / "best.ckpt"
        acc = metrics.get("best_val_acc") if metrics.get("status") == "finished" else None
        if acc is not None and ckpt.is_file():
            name = " ".join(metrics.get("overrides") or []) or str(record.parent.relative_to(sweep))
            jobs.append((acc, name, ckpt))
    if not jobs:
        raise ConfigError(
            f"sweep={sweep}: no finished job with a validation accuracy and checkpoints/best.ckpt "
            "(runs with data.val_split=0 have none: give their checkpoints as ckpts=[...])"
        )
    jobs.sort(key=lambda job: -job[0])
    return [(name, ckpt) for _, name, ckpt in jobs[:k]]


def snapshot_members(run: Path) -> list[tuple[str, Path]]:
    """The snapshots of one run (callbacks.snapshots), in epoch order."""
    paths = (run / "checkpoints").glob("snapshot-e*.ckpt")
    matches = [(re.fullmatch(r"snapshot-e(\d+)\.ckpt", p.name), p) for p in paths]
    found = sorted((int(m.group(1)), p) for m, p in matches if m)
    if not found:
        raise ConfigError(
            f"snapshots={run}: no checkpoints/snapshot-e<epoch>.ckpt; train with "
            "callbacks.snapshots.every_n_epochs=K or callbacks.snapshots.at_restarts=true"
        )
    return [(f"epoch {epoch}", path) for epoch, path in found]
