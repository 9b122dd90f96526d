"""The LightningModule: cross-entropy classification of whatever network the config names."""

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics.classification import MulticlassAccuracy

from cnnlab.errors import Diverged
from cnnlab.models import build_model
from cnnlab.regularizers import apply_max_norm, param_groups, penalty
from cnnlab.schedules import build_schedule

NO_REGULARIZER = {"l1": 0.0, "l2": 0.0, "max_norm": None, "decay_norm_and_bias": True}


class Classifier(L.LightningModule):
    """Trains ``build_model(**net)`` with ``optimizer`` and ``scheduler`` from config.

    Everything it is given is a plain mapping, saved as hyperparameters, so
    ``Classifier.load_from_checkpoint(path)`` rebuilds the network without Hydra.

    Args:
        net: the arguments of ``cnnlab.models.build_model`` (model, activation, norm, init, ...).
        optimizer: a ``_partial_`` optimizer config, completed here with the parameters.
        scheduler: see ``cnnlab.schedules.build_schedule``; empty for a constant rate.
        regularizer: ``l1`` and ``l2`` penalties on the loss, ``max_norm`` constraint after each
            step, ``decay_norm_and_bias`` (false: weight decay only on conv/dense kernels).
        label_smoothing: passed to the cross-entropy loss (also applied to mixup's soft targets).
        val_stage: the name validation metrics are logged under (``val_on_test`` when the
            validation loop runs on the test set).
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        regularizer: Mapping[str, Any] | None = None,
        label_smoothing: float = 0.0,
        val_stage: str = "val",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(**net)
        self.reg = {**NO_REGULARIZER, **(regularizer or {})}
        classes = net.get("num_classes", 10)
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(classes, average="micro") for _ in range(3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against class indices (N,) or mixup's soft targets (N, classes)."""
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.loss(logits, targets)
        self._check_finite(loss, batch_idx)
        hard = targets.argmax(1) if targets.ndim == 2 else targets  # mixup: the larger share
        self.train_acc(logits, hard)
        # sync_dist: under DDP, epoch means over all processes (plateau schedules watch them)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        extra = penalty(self.net, self.reg["l1"], self.reg["l2"])
        if extra is not None:
            self.log("train/penalty", extra, on_step=False, on_epoch=True, sync_dist=True)
            loss = loss + extra
        return loss

    def _check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Stop before a NaN or infinite loss reaches the weights: the last checkpoint stays the
        last good state. (Reading the loss waits for the device, once per step.)"""
        finite = bool(torch.isfinite(loss))
        trainer = self._trainer  # None when called outside a Trainer
        if trainer is not None and trainer.world_size > 1:  # all processes stop together,
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)  # or some hang
        if not finite:
            raise Diverged(
                f"the training loss is {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step} (batch {batch_idx} of the epoch)"
            )

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.reg["max_norm"] is not None:
            apply_max_norm(self.net, self.reg["max_norm"])

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.hparams.val_stage, self.val_acc)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def _eval_step(self, batch, stage: str, accuracy: MulticlassAccuracy) -> None:
        images, labels = batch
        logits = self(images)
        accuracy(logits, labels)
        loss = self.loss(logits, labels)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", sync_dist=True)
        self.log(f"{stage}/acc", accuracy, prog_bar=True)

    def configure_optimizers(self):
        params = param_groups(self.net, self.reg["decay_norm_and_bias"])
        optimizer = instantiate(self.hparams.optimizer)(params=params)
        trainer = self.trainer
        trainer.fit_loop.setup_data()  # the batch count, also for runs bounded by max_steps
        batches = trainer.num_training_batches  # inf where Lightning skips training
        per_epoch = (
            math.ceil(batches / trainer.accumulate_grad_batches) if batches < math.inf else 0
        )
        total = trainer.estimated_stepping_batches  # inf for a run without an end
        schedule = build_schedule(optimizer, self.hparams.scheduler or {}, total, per_epoch)
        if schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": schedule}
