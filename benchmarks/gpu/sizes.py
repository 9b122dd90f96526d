"""What each part of the GPU check runs: its full sizes for one GPU, and toy ones for the CPU."""

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Runs without the figures and the progress bar: what they cost is the framework part's measure
SILENCED = "progress_bar model_summary confusion_matrix predictions curves filters augment_examples"
QUIET = [f"~callbacks.{name}" for name in SILENCED.split()]


@dataclass(frozen=True)
class Sizes:
    toy: bool = False
    trainer: str = "gpu"
    bench: list[str] = field(default_factory=list)  # the bench's own data: 4,300 fake images
    rounds: int = 2
    epochs: int = 3
    batches: int = 30
    data_batches: int = 50
    workers: int = 8  # of the per-image loader
    grid_jobs: int = 4
    packing: tuple[int, ...] = (1, 2, 4)
    gpu_test_files: int | None = None  # None: every file with a GPU test
    # the NIN lab report's runs in small: no validation split, 2 epochs of 40,000 images
    grid: list[str] = field(
        default_factory=lambda: ["data.dataset.train_size=40000", "trainer.max_epochs=2"]
    )
    nin_epoch_batches: int = 391
    nin_epoch: list[str] = field(default_factory=lambda: ["data.dataset.train_size=50000"])
    fashion: list[str] = field(default_factory=list)


TINY = ["data.image_size=16", "data.batch_size=16"]
TOY = Sizes(
    toy=True,
    trainer="cpu",
    bench=[*TINY, "data.dataset.train_size=200"],
    rounds=1,
    epochs=2,
    batches=2,
    data_batches=2,
    workers=0,
    grid_jobs=2,
    packing=(2,),  # the launcher's packing exercised; its gain is measured on a GPU only
    gpu_test_files=1,
    grid=[*TINY, "data.dataset.train_size=64", "trainer.max_epochs=1"],
    nin_epoch_batches=2,
    nin_epoch=[*TINY, "data.dataset.train_size=64"],
    fashion=["data.train_subset=500", "data.test_subset=200", "trainer.max_epochs=1"],
)
