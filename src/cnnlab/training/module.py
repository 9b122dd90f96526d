"""The LightningModule: cross-entropy classification of whatever network the config names."""

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from cnnlab import registry
from cnnlab.config.settings import upgrade_hparams as upgrade
from cnnlab.errors import Diverged
from cnnlab.models.build import build_model, layout_of
from cnnlab.options import Fraction, Target, read
from cnnlab.registry import build
from cnnlab.training.finetune import Finetuning, build_optimizer
from cnnlab.training.regularizers import Regularizer
from cnnlab.training.schedules import build_schedule

# Training steps between two reads of their losses by the host (see Classifier._check_finite).
CHECK_EVERY = 50


class Classifier(L.LightningModule):
    """Trains the network the config names with its ``optimizer`` and ``scheduler``.

    Each argument is the config node of its name, a plain mapping saved as a hyperparameter, so
    ``Classifier.load(path)`` alone rebuilds it. It takes images (N, C, H, W) as uint8 or floats in
    [0, 1]; the normalisation (``preprocess``; None: none) is part of the model, its statistics
    taken from the data module as fitting starts and saved in every checkpoint with the class names,
    so a checkpoint classifies raw images without Hydra or the data. ``optimizer`` is ``_partial_``,
    completed here with the parameters; ``label_smoothing`` is of the training loss only;
    ``compile`` compiles the network alone (checkpoints keep its parameter names)."""

    def __init__(
        self,
        model: Mapping[str, Any],
        activation: Mapping[str, Any],
        norm: Mapping[str, Any],
        init: Mapping[str, Any],
        optimizer: Target,
        data: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        regularizer: Mapping[str, Any] | None = None,
        preprocess: Mapping[str, Any] | None = None,
        finetune: Mapping[str, Any] | None = None,
        label_smoothing: Fraction = 0.0,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        channels, size, _ = self.image_shape
        self.preprocess = nn.Identity()
        if preprocess is not None:
            make = registry.factory("preprocess", preprocess)
            self.preprocess = registry.supply(make, channels=channels, size=size)
        self.class_names: list[str] | None = None  # the data set's, taken with the statistics
        self.data: dict[str, Any] | None = None  # the data module's arguments (src/eval.py)
        self.net = build_model(model, activation, norm, init, channels, self.num_classes, size)
        self.tuning = read(Finetuning, finetune, "finetune")
        self.finetuning = self.tuning.callback(self.net)  # an unknown part fails here, now
        self.channels_last = layout_of(model)["channels_last"]
        if compile:
            self.net.compile()
        self.reg = read(Regularizer, regularizer, "regularizer")
        self.val_stage = "val_on_test" if data.get("val_on_test") else "val"
        self.train_acc, self.val_acc, self.test_acc = (
            # validate_args would check the labels on the host at every step
            MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)
            for _ in range(3)
        )
        # The epoch's (sum of loss x images, images), on the loss's device; not a buffer, which
        # weight averaging (EMA) would average and swap. Not torchmetrics' MeanMetric: its NaN
        # check reads the loss on the host at every step, and without it (nan_strategy=
        # "disable") it drops the weights (torchmetrics 1.9).
        self._loss_sum: torch.Tensor | None = None
        self._losses: list[tuple[torch.Tensor, int, int, int]] = []  # since the last check

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images it classifies."""
        data = self.hparams.data
        return data["in_channels"], data["image_size"], data["image_size"]

    @property
    def num_classes(self) -> int:
        return self.hparams.data["num_classes"]

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **changed: Any) -> "Classifier":
        """The Classifier a checkpoint holds (an earlier cnnlab's too: weights, normalisation,
        class names and data arguments), ``changed`` put over its hyperparameters."""
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        module = cls(**{**upgrade(checkpoint["hyper_parameters"]), **changed})
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        return module.to(device)

    # False while a learning-rate range test drives the rate until the loss explodes: that is
    # its end, not a failure (cnnlab.tuning.tune).
    stop_on_nonfinite = True

    @property
    def lr(self) -> float:
        """The optimizer's rate, where Lightning's Tuner and LearningRateFinder look for it
        (they cannot read a nested ``optimizer.lr``, Lightning #20560); setting it changes the
        optimizer that configure_optimizers builds."""
        return self.hparams.optimizer["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hparams.optimizer = {**self.hparams.optimizer, "lr": value}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        with torch.autocast(x.device.type, enabled=False):  # whitening in float32, not bf16
            x = self.preprocess(x.float())
        if self.channels_last:  # the input as the weights are stored, or convolutions convert
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def setup(self, stage: str) -> None:
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if stage == "fit" and datamodule is not None:  # a checkpoint loaded after this, to
            self.use_data(datamodule)  # resume or to test, brings its own

    def use_data(self, datamodule) -> None:
        """Take a set-up ImageDataModule's statistics, class names and arguments (for eval.py)."""
        self.preprocess.load_state_dict(datamodule.normalize.state_dict())
        self.class_names = datamodule.class_names
        self.data = dict(datamodule.hparams)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["class_names"] = self.class_names
        checkpoint["data"] = self.data

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.class_names = checkpoint.get("class_names")
        self.data = checkpoint.get("data")

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss training optimises (``train/loss``): cross-entropy, label smoothing
        included, against class indices (N,) or mixup's soft targets (N, classes)."""
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.loss(logits, targets)
        self._losses.append((loss.detach(), self.current_epoch, self.global_step, batch_idx))
        if len(self._losses) >= CHECK_EVERY or self._ends_epoch(batch_idx):
            self._check_finite()  # before the epoch's end: checkpoints are saved then
        hard = targets.argmax(1) if targets.ndim == 2 else targets  # mixup: the larger share
        # Accumulated here and logged once an epoch (on_train_epoch_end): self.log and a
        # metric's forward at every step cost ~2 ms of Python a step more (measured on a
        # 2-core CPU), a large share of a small network's whole step on a GPU.
        self.train_acc.update(logits.detach(), hard)
        if self._loss_sum is None:
            self._loss_sum = torch.zeros(2, device=loss.device)
        self._loss_sum[0] += loss.detach() * len(logits)
        self._loss_sum[1] += len(logits)
        extra = self.reg.penalty(self.net)
        if extra is not None:
            self.log("train/penalty", extra, on_step=False, on_epoch=True, sync_dist=True)
            loss = loss + extra
        return loss

    def _check_finite(self) -> None:
        """Stop if a training loss since the last check was not finite, naming the first. Read
        every CHECK_EVERY steps, not every step (the host would wait for the device), and before
        anything validates or saves: the weights a NaN reached are never saved."""
        if not self._losses:
            return
        losses, self._losses = self._losses, []
        if not self.stop_on_nonfinite:
            return
        finite = torch.isfinite(torch.stack([loss for loss, *_ in losses])).tolist()
        ok = all(finite)
        trainer = self._trainer  # None when called outside a Trainer
        if trainer is not None and trainer.world_size > 1:  # all processes stop together,
            ok = trainer.strategy.reduce_boolean_decision(ok, all=True)  # or some would hang
        if ok:
            return
        loss, epoch, step, batch_idx = losses[finite.index(False) if False in finite else -1]
        where = f"at epoch {epoch}, step {step} (batch {batch_idx} of the epoch)"
        if False not in finite:
            raise Diverged(f"another process's training loss is not finite, by {where}")
        raise Diverged(f"the training loss is {loss.item()} {where}")

    def _ends_epoch(self, batch_idx: int) -> bool:
        trainer = self._trainer
        if trainer is None:
            return False
        last_step = 0 < trainer.max_steps <= self.global_step + 1
        return last_step or batch_idx + 1 >= trainer.num_training_batches

    def on_validation_start(self) -> None:
        self._check_finite()

    def on_train_epoch_end(self) -> None:
        self._check_finite()
        # Summed over every process under DDP (plateau schedules may watch these); sync_dist
        # then averages equal values, and keeps Lightning from warning.
        sums, self._loss_sum = self._loss_sum, None
        if sums is None:  # no training step this epoch
            return
        loss, images = self.trainer.strategy.reduce(sums, reduce_op="sum")
        self.log("train/loss", loss / images, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc.compute(), sync_dist=True)
        self.train_acc.reset()

    def on_train_end(self) -> None:
        self._check_finite()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.reg.constrain(self.net)

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, self.val_stage, self.val_acc)

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test", self.test_acc)

    def _eval_step(self, batch, stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        """The batch's logits, for callbacks (on_test_batch_end's ``outputs``)."""
        images, labels = batch
        logits = self(images)
        accuracy(logits, labels)
        # The plain cross-entropy (the NLL), what an evaluation reports and eval.py's ensembles
        # compute: label smoothing is part of what training optimises, not of the score.
        loss = F.cross_entropy(logits, labels)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", sync_dist=True)
        self.log(f"{stage}/acc", accuracy, prog_bar=True)
        return logits.detach()

    def configure_callbacks(self):
        """Fine-tuning's freezing, which the Trainer adds to its own callbacks (once: the test
        after fitting finds it there already)."""
        if self.finetuning is None or self.finetuning in self.trainer.callbacks:
            return []
        return [self.finetuning]

    def configure_optimizers(self):
        params = self.reg.param_groups(self.net)
        make = build(self.hparams.optimizer)
        optimizer = build_optimizer(make, self.net, params, self.tuning.body_lr)
        trainer = self.trainer
        trainer.fit_loop.setup_data()  # the batch count, also for runs bounded by max_steps
        batches = trainer.num_training_batches  # inf where Lightning skips training
        per_epoch = (
            math.ceil(batches / trainer.accumulate_grad_batches) if batches < math.inf else 0
        )
        total = trainer.estimated_stepping_batches  # inf for a run without an end
        scheduler = self.hparams.scheduler or {"name": "none"}
        schedule = build_schedule(optimizer, scheduler, total, per_epoch)
        if schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": schedule}
