"""Each epoch's randomness seeded from (seed, epoch, rank): a resumed run continues exactly."""

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback


class EpochSeed(Callback):
    """Reseed torch, numpy and Python as each epoch starts: its draws do not depend on what ran
    before, and under DDP each process draws its own (one draw for all would give N GPUs the
    variety of one); the initial weights, drawn before, are the same in every process."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # SeedSequence mixes them, so seed 1's epoch 2 is not seed 2's epoch 1. The order of
        # the images is DistributedSampler's (seeded by the epoch, the same in every process).
        entropy = [self.seed, trainer.current_epoch, trainer.global_rank]
        mixed = np.random.SeedSequence(entropy).generate_state(1)[0]
        L.seed_everything(int(mixed), workers=True, verbose=False)
