"""Fine-tuning: freeze parts of the body, unfreeze them at an epoch, train the body at a share of
the head's rate. The weights come from ``init.checkpoint`` (cnnlab.models.pretrained), the parts
from cnnlab.models.parts (the head: the output layer and what follows it)."""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le, MinLen
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from cnnlab.errors import ConfigError
from cnnlab.models.parts import parts
from cnnlab.options import Count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finetuning:
    """The ``finetune`` node: the body's parts that do not train (``all``, the first N, or names),
    the body's rate as a share of the head's, and the epoch (from 0) the frozen parts thaw at."""

    freeze: Literal["all"] | Annotated[int, Ge(1)] | Annotated[list[str], MinLen(1)] | None = None
    body_lr: Annotated[float, Gt(0), Le(1)] = 1.0
    unfreeze_at: Count | None = None

    def callback(self, net: nn.Module) -> "Finetune | None":
        """The callback that freezes the parts named (one not there is refused now), or None."""
        if self.freeze is None:
            return None
        body, head = parts(net)
        names = list(body)
        choices = f"choose from: {', '.join(names)} (the head, {', '.join(head)}, always trains)"
        freeze = self.freeze
        if freeze == "all":
            chosen = names
        elif isinstance(freeze, int):
            if freeze > len(names):
                raise ConfigError(f"finetune.freeze={freeze}: only {len(names)} parts; {choices}")
            chosen = names[:freeze]
        else:
            unknown = [name for name in freeze if name not in body]
            if unknown:
                raise ConfigError(f"finetune.freeze: no part '{unknown[0]}'; {choices}")
            chosen = [name for name in names if name in freeze]
        return Finetune(chosen, own=freeze == "all", unfreeze_at=self.unfreeze_at)


class Finetune(BaseFinetuning):
    """Freezes the network's parts ``names`` (with ``own``, the parameters it holds itself: a
    ViT's position embedding) until epoch ``unfreeze_at`` starts (None: never); their BN layers
    keep their weights and running statistics too.

    Lightning's ``unfreeze_and_add_param_group`` adds a parameter group mid-run, unknown to the
    schedule: OneCycleLR fails on its missing ``initial_lr``, the warmup on a changed group count
    (torch 2.14). So every parameter is in the optimizer from the start (``build_optimizer``) and a
    frozen one only lacks a gradient: no step, no weight decay, no momentum."""

    def __init__(self, names: list[str], own: bool = False, unfreeze_at: int | None = None):
        super().__init__()
        self.names, self.own, self.unfreeze_at = names, own, unfreeze_at

    def freeze_before_training(self, pl_module) -> None:
        self.freeze(self._modules(pl_module), train_bn=False)
        for param in self._own(pl_module):
            param.requires_grad = False

    def finetune_function(self, pl_module, epoch: int, optimizer: Optimizer) -> None:
        # At every epoch from unfreeze_at on, not only at it (as BackboneFinetuning does): a
        # resumed run's setup has frozen the parts again (Lightning #21901).
        self._unfreeze_by(pl_module, epoch)

    def on_train_start(self, trainer, pl_module) -> None:
        # A run resumed within an epoch does not start that epoch again (no
        # on_train_epoch_start): the state the epoch calls for, now.
        self._unfreeze_by(pl_module, trainer.current_epoch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # Frozen BN layers normalise by their running statistics, as when tested (a fixed feature
        # extractor, as Keras freezes them); Lightning's freeze leaves them normalising each batch
        # by its own. Set at every step (a few modules): fitting puts the whole model in training
        # mode as it starts, a resumed one included.
        thawed = self.unfreeze_at is not None and trainer.current_epoch >= self.unfreeze_at
        for module in self._modules(pl_module):
            for norm in module.modules():
                if isinstance(norm, _BatchNorm):
                    norm.train(thawed)

    def _unfreeze_by(self, pl_module, epoch: int) -> None:
        if self.unfreeze_at is None or epoch < self.unfreeze_at:
            return
        modules = self._modules(pl_module)
        params = [*self._own(pl_module), *(p for m in modules for p in m.parameters())]
        if all(p.requires_grad for p in params):
            return
        self.make_trainable(modules)
        for param in self._own(pl_module):
            param.requires_grad = True
        log.info(f"epoch {epoch}: {', '.join(self.names)} unfrozen, at the body's rate")

    def _modules(self, pl_module) -> list[nn.Module]:
        return [pl_module.net.get_submodule(name) for name in self.names]

    def _own(self, pl_module) -> Iterable[nn.Parameter]:
        return pl_module.net.parameters(recurse=False) if self.own else ()


def build_optimizer(
    make: Callable[..., Optimizer], net: nn.Module, params: list, body_lr: float = 1.0
) -> Optimizer:
    """``make(params=params)``; with ``body_lr`` below 1 each group split into the head's part and
    the body's at ``body_lr`` times the rate, named (``head``, ``body``; ``_no_decay`` where weight
    decay is off) for the LR monitor's columns (``lr-SGD/body``)."""
    if body_lr == 1:
        return make(params=params)
    _, head = parts(net)
    in_head = {id(p) for module in head.values() for p in module.parameters()}
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    split = []
    for part in ("head", "body"):
        for group in groups:
            chosen = [p for p in group["params"] if (id(p) in in_head) == (part == "head")]
            # regularizers.param_groups turns weight decay off in the group it spares
            name = f"{part}_no_decay" if group.get("weight_decay") == 0 else part
            if chosen:
                split.append({**group, "params": chosen, "name": name})
    optimizer = make(params=split)
    for group in optimizer.param_groups:
        if group["name"].startswith("body"):
            group["lr"] *= body_lr
    return optimizer
