"""The learning rate a real Trainer used at every step, for each schedule and warmup."""

import math

import pytest
from lightning.pytorch.callbacks import Callback

from cnnlab.errors import ConfigError
from cnnlab.run.assemble import build_datamodule, build_module, build_trainer
from cnnlab.run.checks import check

from conftest import FAST

STEPS_PER_EPOCH = 4  # 32 fake images, batch 8, no validation split


class RecordLR(Callback):
    """The rate each optimizer step ran with, and each epoch's first."""

    def __init__(self):
        self.steps: list[float] = []
        self.epochs: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.steps.append(lr)
        if batch_idx == 0:
            self.epochs.append(lr)


def used_lrs(make_cfg, *overrides: str) -> RecordLR:
    """Train a tiny net under a real Trainer; the rates it used."""
    cfg = make_cfg(
        [
            "data=fake",
            "data.image_size=16",
            "data.dataset.train_size=32",
            "data.dataset.test_size=8",
            "data.batch_size=8",
            "data.val_split=0",
            "model=base_cnn",
            "model.hidden=16",
            "optimizer=sgd",
            "optimizer.lr=1.0",
            "optimizer.weight_decay=0",
            "~callbacks.model_checkpoint",
            "~callbacks.last_checkpoint",
            "+trainer.enable_checkpointing=false",
            "logger=csv",
            *FAST,
            *overrides,
        ]
    )
    datamodule, module = build_datamodule(cfg), build_module(cfg)
    trainer = build_trainer(cfg, select_best=bool(cfg.data.val_split))
    record = RecordLR()
    trainer.callbacks.append(record)
    trainer.fit(module, datamodule=datamodule)
    return record


def cosine(t: float, length: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * t / length))


def ramp(t: float, length: int, start: float = 0.1) -> float:
    return start + (1 - start) * min(1.0, t / length)


def test_warmup_scales_the_start_of_cosine_and_ends_where_cosine_ends(make_cfg):
    plain = used_lrs(make_cfg, "scheduler=cosine", "trainer.max_epochs=10").epochs
    warm = used_lrs(
        make_cfg, "scheduler=cosine", "trainer.max_epochs=10", "scheduler.warmup_epochs=3"
    ).epochs
    assert plain == pytest.approx([cosine(e, 10) for e in range(10)])
    assert warm == pytest.approx([ramp(e, 3) * cosine(e, 10) for e in range(10)])
    assert warm[3:] == pytest.approx(plain[3:])  # the last epoch at ~0, as without warmup
    assert warm[-1] < 0.03


def test_warmup_keeps_multistep_milestones_on_their_epochs(make_cfg):
    lrs = used_lrs(
        make_cfg,
        "scheduler=multistep",
        "scheduler.milestones=[4,6]",
        "scheduler.warmup_epochs=2",
        "trainer.max_epochs=8",
    ).epochs
    assert lrs == pytest.approx([0.1, 0.55, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_cosine_per_step_decays_over_the_runs_steps(make_cfg):
    lrs = used_lrs(
        make_cfg, "scheduler=cosine", "scheduler.interval=step", "trainer.max_epochs=3"
    ).steps
    steps = 3 * STEPS_PER_EPOCH
    assert lrs == pytest.approx([cosine(s, steps) for s in range(steps)])


def test_epoch_arguments_become_steps_with_interval_step(make_cfg):
    lrs = used_lrs(
        make_cfg,
        "scheduler=multistep",
        "scheduler.interval=step",
        "scheduler.milestones=[1,2]",
        "trainer.max_epochs=3",
    ).steps
    assert lrs == pytest.approx([1.0] * 4 + [0.1] * 4 + [0.01] * 4)
    exp = used_lrs(
        make_cfg, "scheduler=exponential", "scheduler.interval=step", "trainer.max_epochs=2"
    ).steps
    assert exp == pytest.approx([0.9 ** (s / STEPS_PER_EPOCH) for s in range(8)])


def test_max_steps_run_counts_its_epochs_and_steps(make_cfg):
    # max_epochs=-1: the run ends after 10 steps, 2.5 epochs of 4 steps.
    lrs = used_lrs(
        make_cfg,
        "scheduler=cosine",
        "scheduler.interval=step",
        "scheduler.warmup_epochs=1",
        "trainer.max_epochs=-1",
        "trainer.max_steps=10",
    ).steps
    assert lrs == pytest.approx([ramp(s, STEPS_PER_EPOCH) * cosine(s, 10) for s in range(10)])


def test_a_fractional_warmup_with_interval_step_is_rounded_to_steps(make_cfg):
    lrs = used_lrs(
        make_cfg,
        "scheduler=none",
        "scheduler.interval=step",
        "scheduler.warmup_epochs=0.3",  # 1.2 steps of 4: one step
        "trainer.max_epochs=1",
    ).steps
    assert lrs == pytest.approx([0.1, 1.0, 1.0, 1.0])


def test_onecycle_peaks_at_30_percent_and_ends_near_zero(make_cfg):
    lrs = used_lrs(make_cfg, "scheduler=onecycle", "trainer.max_epochs=5").steps
    steps = 5 * STEPS_PER_EPOCH
    assert len(lrs) == steps
    assert lrs.index(max(lrs)) == round(0.3 * steps) - 1
    assert max(lrs) == pytest.approx(1.0) and lrs[0] == pytest.approx(1.0 / 25)
    assert lrs[-1] < 1e-3


def test_plateau_halves_after_patience_epochs_without_improvement(make_cfg):
    # At lr 1e-3 the loss moves by far less than a threshold of 10 (absolute): no epoch after
    # the first counts as an improvement.
    lrs = used_lrs(
        make_cfg,
        "optimizer.lr=1e-3",
        "scheduler=plateau",
        "scheduler.patience=1",
        "+scheduler.threshold=10",
        "+scheduler.threshold_mode=abs",
        "data.val_split=0.25",
        "trainer.max_epochs=6",
    )
    assert lrs.epochs == pytest.approx([1e-3 * f for f in (1, 1, 1, 0.5, 0.5, 0.25)])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scheduler=cosine", "scheduler.warmup_epochs=0.5"], "interval=step it may be a fraction"),
        (["scheduler=cosine", "trainer.limit_train_batches=0"], "an epoch has no training batch"),
        (["scheduler=plateau", "scheduler.interval=step"], "plateau watches a metric of each"),
        (["scheduler=onecycle", "scheduler.warmup_epochs=1"], "has its own warmup"),
        (["scheduler=cosine", "scheduler.name=polynomial"], "polynomial.*choose from: cosine"),
    ],
)
def test_schedules_that_cannot_be_honoured_are_refused(overrides, message, make_cfg):
    with pytest.raises(ConfigError, match=message):
        used_lrs(make_cfg, "trainer.max_epochs=2", *overrides)
    if "limit_train_batches" not in overrides[-1]:  # what only the data can tell
        with pytest.raises(ConfigError, match=message):  # refused before the run directory
            check(make_cfg(["trainer.max_epochs=2", *overrides]))
