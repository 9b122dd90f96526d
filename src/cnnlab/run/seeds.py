"""Each epoch's randomness seeded from (seed, epoch, rank): a run resumed from the end of an
epoch continues exactly as the uninterrupted run would, and each DDP process draws its own."""

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback


class EpochSeed(Callback):
    """Reseed torch, numpy and Python at the start of every epoch from (seed, epoch, rank): the
    epoch's shuffle, augmentation and dropout then do not depend on what ran before it, and
    under DDP each process draws its own crops, flips, noise, dropout masks and mixups (one
    draw for all would give N GPUs the variety of one). The initial weights come from the seed
    alone, before the first epoch, and are the same in every process."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # SeedSequence mixes them, so seed 1's epoch 2 is not seed 2's epoch 1. The order of
        # the images is DistributedSampler's (seeded by the epoch, the same in every process).
        entropy = [self.seed, trainer.current_epoch, trainer.global_rank]
        mixed = np.random.SeedSequence(entropy).generate_state(1)[0]
        L.seed_everything(int(mixed), workers=True, verbose=False)
