"""Penalties on the loss and constraints on the weights (the Keras hyper-parameter slides, the
CNN tricks slides, the ResNet report), on the kernels of convolutions and dense layers only:
never on biases, norm parameters, learned slopes or a ViT's embeddings and class token."""

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.layers.inits import KERNEL_LAYERS
from cnnlab.options import NonNegative, Positive


def weights(net: nn.Module) -> list[torch.Tensor]:
    """The conv and dense kernels of ``net``."""
    return [m.weight for m in net.modules() if isinstance(m, KERNEL_LAYERS)]


@dataclass(frozen=True)
class Regularizer:
    """The ``regularizer`` node: L1 and L2 penalties on the loss, a max-norm after every step."""

    l1: NonNegative = 0.0
    l2: NonNegative = 0.0
    max_norm: Positive | None = None
    decay_norm_and_bias: bool = True

    def penalty(self, net: nn.Module) -> torch.Tensor | None:
        """l1 * sum|w| + l2 * sum w^2 over all weights, or None when both are 0."""
        if not self.l1 and not self.l2:
            return None
        ws = weights(net)
        total = sum(w.abs().sum() for w in ws) * self.l1 if self.l1 else 0.0
        return total + (sum(w.pow(2).sum() for w in ws) * self.l2 if self.l2 else 0.0)

    @torch.no_grad()
    def constrain(self, net: nn.Module) -> None:
        """Rescale each unit's incoming weights (a dense row, a conv filter) whose L2 norm exceeds
        ``max_norm`` onto that ball (Srivastava et al. 2014); frozen weights are left alone."""
        if self.max_norm is None:
            return
        for w in weights(net):
            if w.requires_grad:
                w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=self.max_norm))

    def param_groups(self, net: nn.Module) -> list[dict] | list[nn.Parameter]:
        """All parameters, or two groups so that weight decay reaches the kernels only."""
        params = list(net.parameters())
        if self.decay_norm_and_bias:
            return params
        kernels = {id(w) for w in weights(net)}
        decay = [p for p in params if id(p) in kernels]
        rest = [p for p in params if id(p) not in kernels]
        return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]
