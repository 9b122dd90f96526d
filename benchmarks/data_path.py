"""The training loader alone, batches made as cnnlab makes them against the per-image
torchvision pipeline they replaced, for each augment preset:

    python -m benchmarks.data_path [overrides] [--batches N] [--workers N]
"""

import argparse
import tempfile

import torch

from benchmarks.speed import compose, now, with_defaults
from cnnlab import CONF


# The per-image torchvision pipelines that the batched presets replace, run in DataLoader
# workers as before: the reference for the data path's speed-up.
def _per_image(preset: str, mean: list[float], std: list[float]):
    from torchvision.transforms import v2

    crop_flip = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    steps = {
        "none": [],
        "standard": crop_flip,
        "cutout": [*crop_flip, v2.RandomErasing(scale=(0.02, 0.2))],
        "autoaugment": [*crop_flip, v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)],
    }.get(preset)
    if steps is None:
        return None
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class _PerImage(torch.utils.data.Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


class _Training:
    """The little of a Trainer the data module asks for in a training step."""

    training = True

    def __init__(self, device: torch.device):
        self.strategy = type("Strategy", (), {"root_device": device})()


def _images_per_second(batches, device: torch.device, count: int) -> float:
    """Throughput of an iterator of batches, after three batches of warm-up: the ``count``
    batches made after the clock starts."""
    seen, start = 0, None
    for i, (x, _) in enumerate(batches):
        if i == 3:  # made before the clock starts: not counted
            start = now(device)
        elif i > 3:
            seen += len(x)
        if i == count + 3:
            break
    return seen / (now(device) - start)


def _batched(dm, device: torch.device):
    """Training batches as cnnlab makes them: sliced, moved, augmented, and normalised (by the
    model, in training; here as the per-image pipelines do)."""
    normalize = dm.normalize.to(device)
    while True:
        for batch in dm.train_dataloader():
            batch = [t.to(device, non_blocking=True) for t in batch]
            x, y = dm.on_after_batch_transfer(batch, 0)
            yield normalize(x), y


def _per_image_batches(loader, device: torch.device):
    while True:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y


def data_path(overrides: list[str], batches: int, workers: int) -> list[tuple[str, float, float]]:
    """Images/s of each augment preset: batched (as cnnlab runs it), per image (workers)."""
    from cnnlab.run.assemble import build_datamodule

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    presets = sorted(p.stem for p in (CONF / "augment").glob("*.yaml"))
    rows = []
    for preset in presets:
        with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as out:
            cfg = compose([f"augment={preset}", *overrides], out)
        dm = build_datamodule(cfg)
        dm.setup()
        dm.trainer = _Training(device)

        fast = _images_per_second(_batched(dm, device), device, batches)
        per_image = _per_image(
            preset, dm.normalize.mean.flatten().tolist(), dm.normalize.std.flatten().tolist()
        )
        slow = float("nan")
        if per_image is not None and cfg.data.image_size == 32:
            loader = torch.utils.data.DataLoader(
                _PerImage(dm.train_set.images, dm.train_set.labels, per_image),
                batch_size=cfg.data.batch_size,
                shuffle=True,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
            slow = _images_per_second(_per_image_batches(loader, device), device, batches)
        rows.append((preset, fast, slow))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_path", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="config overrides, as for src/train.py")
    parser.add_argument("--batches", type=int, default=30, help="batches timed per preset")
    parser.add_argument("--workers", type=int, default=2, help="of the per-image loader")
    args = parser.parse_intermixed_args(argv)
    print(f"{'augment':<16}{'batched img/s':>15}{'per-image img/s':>17}{'speed-up':>10}")
    for preset, fast, slow in data_path(with_defaults(args.overrides), args.batches, args.workers):
        if slow != slow:  # NaN: no per-image pipeline to compare with
            print(f"{preset:<16}{fast:>15,.0f}{'-':>17}{'-':>10}")
        else:
            print(f"{preset:<16}{fast:>15,.0f}{slow:>17,.0f}{fast / slow:>10.2f}")


if __name__ == "__main__":
    main()
