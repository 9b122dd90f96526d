"""How much a cnnlab run costs over a plain PyTorch loop, and how fast the data path is.

    python -m benchmarks.speed model=base_cnn        # the training path, cnnlab vs raw
    python -m benchmarks.data_path augment=standard  # the loaders alone (data_path.py)

Takes the same overrides as ``src/train.py``. Unless they say otherwise: ``data=fake`` with 4,300
CIFAR-sized random images (30 batches of 128 to train on, 430 to validate on: an epoch of
CIFAR-10 in miniature), nothing to download. In one process, alternating ``--rounds`` times:

(a) cnnlab as users run it: ``Trainer.fit`` with the configured callbacks (progress bar,
    checkpoints), CSV logger, module and data module;
(b) a plain PyTorch loop on the same network, images, augmentation, optimizer, precision and
    gradient clipping: no framework, no logging, no checkpoints.

Each trains ``--epochs`` epochs of ``--batches`` batches and validates after each; images/s are
counted from the second epoch's start (the first warms up caches and threads; its checkpoint
is written before the clock starts) to the last epoch's end, validation and the timed epochs'
checkpoints included (the last one waited for). What cnnlab does once per run is not counted,
like its start-up: the end-of-run figures, whose seconds are printed beside the round. Rounds
alternate the order (a, b), (b, a), ... so that a machine slowing down or speeding up over
minutes weighs on both alike; each round's ratio is (a) / (b) of that round, and the last
line, ``ratio``, is the median of the rounds' ratios.
"""

import argparse
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback


def compose(overrides: list[str], output_dir: str):
    """The training config as src/train.py composes it, the run in ``output_dir``."""
    from omegaconf import open_dict

    from cnnlab.config.job import compose as hydra_compose

    cfg = hydra_compose([*overrides, f"paths.output_dir={output_dir}"], hydra=True)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def with_defaults(overrides: list[str]) -> list[str]:
    """The bench's own defaults (see the module's help), where ``overrides`` set nothing."""
    given = {line.split("=", 1)[0].lstrip("+~") for line in overrides}
    defaults = {"data": "fake", "data.batch_size": "128"}
    if given.isdisjoint({"data", "data.dataset.train_size"}):
        defaults["data.dataset.train_size"] = "4300"
    return [f"{k}={v}" for k, v in defaults.items() if k not in given] + overrides


def now(device: torch.device) -> float:
    """The time, once ``device`` has done the work queued on it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class _Clock(Callback):
    """When the second epoch started and when fitting ended (called before the other callbacks'
    end-of-run work; after the last checkpoint was written)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            # The first epoch's checkpoint, still being written, is not the timed epochs' own:
            # they pay for theirs (written while the next trains, the last one waited for).
            trainer.strategy.checkpoint_io.teardown()  # waits for the writer thread
            self.start = now(pl_module.device)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.end = now(pl_module.device)


class _EndOfRun(Callback):
    """When the callbacks' end-of-run work (figures) was done: called after the others."""

    def on_fit_end(self, trainer, pl_module) -> None:
        self.end = now(pl_module.device)


def run_cnnlab(overrides: list[str], epochs: int, batches: int) -> tuple[float, float]:
    """Images/s of ``trainer.fit`` from the second epoch on, and the seconds of the work done
    once when fitting ends."""
    from cnnlab.run.assemble import build_datamodule, build_module, build_trainer

    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as out:
        cfg = compose(
            [*overrides, f"trainer.max_epochs={epochs}", f"trainer.limit_train_batches={batches}"],
            out,
        )
        torch.manual_seed(cfg.seed)
        torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))  # as run() does
        dm, module = build_datamodule(cfg), build_module(cfg)
        dm.setup()
        trainer = build_trainer(cfg, select_best=dm.has_validation)
        clock, end_of_run = _Clock(), _EndOfRun()
        trainer.callbacks.insert(0, clock)
        trainer.callbacks.append(end_of_run)
        trainer.fit(module, datamodule=dm)
        images = (epochs - 1) * batches * cfg.data.batch_size
        return images / (clock.end - clock.start), end_of_run.end - clock.end


def run_raw(overrides: list[str], epochs: int, batches: int) -> float:
    """Images/s of a plain loop over the same network, data and optimizer."""
    from cnnlab.options import plain
    from cnnlab.registry import build
    from cnnlab.run.assemble import build_datamodule, build_module
    from cnnlab.training.regularizers import Regularizer

    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as out:
        cfg = compose(overrides, out)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    # What the Trainer sets for cnnlab's path (trainer=gpu: cuDNN's autotuner, TF32): the raw
    # loop's too, whichever of the two runs first.
    torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
    dm, module = build_datamodule(cfg), build_module(cfg)
    dm.setup()
    module.use_data(dm)
    model = module.to(device)  # its forward: normalisation, then the network
    net = module.net
    params = Regularizer(**plain(cfg.regularizer)).param_groups(net)
    optimizer = build(plain(cfg.optimizer))(params=params)
    augment = dm.augment.to(device)
    train, val = dm.train_set.to(device), dm.val_set.to(device)
    size, eval_size = cfg.data.batch_size, cfg.data.eval_batch_size or cfg.data.batch_size
    clip, smoothing = cfg.trainer.gradient_clip_val, cfg.label_smoothing
    precision = str(cfg.trainer.precision)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=precision.startswith("bf16"))
    start = None
    for epoch in range(epochs):
        if epoch == 1:
            start = now(device)
        net.train()
        order = torch.randperm(len(train), device=device)
        for i in range(batches):
            rows = order[i * size : (i + 1) * size]
            x = augment(train.images[rows].float().div_(255))
            with autocast:
                loss = F.cross_entropy(model(x), train.labels[rows], label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
        net.eval()
        with torch.no_grad(), autocast:
            for i in range(0, len(val), eval_size):
                model(val.images[i : i + eval_size].float().div_(255))
    return (epochs - 1) * batches * size / (now(device) - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, as for src/train.py")
    parser.add_argument("--epochs", type=int, default=3, help="per round, the first not timed")
    parser.add_argument("--batches", type=int, default=30, help="training batches per epoch")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of (a) and (b)")
    args = parser.parse_intermixed_args(argv)  # overrides before and after the options
    args.overrides = with_defaults(args.overrides)
    if args.epochs < 2 or args.batches < 1 or args.rounds < 1:
        parser.error("--epochs must be at least 2, --batches and --rounds at least 1")
    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    print(f"overrides: {' '.join(args.overrides)}")
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as out:
        precision = str(compose(args.overrides, out).trainer.precision)
    if precision.startswith("16"):
        parser.error(
            f"trainer.precision={precision} needs a gradient scaler, which the plain loop "
            "does not have; use 32-true or bf16-mixed"
        )
    ratios = []
    for r, (ours, raw, end_of_run) in enumerate(
        rounds(args.overrides, args.epochs, args.batches, args.rounds)
    ):
        ratios.append(ours / raw)
        print(
            f"round {r + 1}: cnnlab {ours:,.0f} img/s, raw loop {raw:,.0f} img/s, "
            f"ratio {ratios[-1]:.3f} (cnnlab's end-of-run figures: {end_of_run:.2f} s, once)"
        )
    print(f"ratio {statistics.median(ratios):.3f}")


def rounds(overrides: list[str], epochs: int, batches: int, count: int):
    """(cnnlab img/s, raw loop img/s, seconds of cnnlab's end-of-run work) of each round, the
    order of the two alternating from round to round."""
    for r in range(count):
        order = (run_cnnlab, run_raw) if r % 2 == 0 else (run_raw, run_cnnlab)
        speed = {run: run(overrides, epochs, batches) for run in order}
        (ours, end_of_run), raw = speed[run_cnnlab], speed[run_raw]
        yield ours, raw, end_of_run


if __name__ == "__main__":
    sys.exit(main())
