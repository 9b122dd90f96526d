"""Reading curves: each rule on made-up curves that show it and on ones that do not, and a real
run that over-fits."""

import json
from dataclasses import replace

import pytest

from cnnlab.errors import ConfigError
from cnnlab.files import epoch_series
from cnnlab.options import read
from cnnlab.results.diagnosis import Thresholds, diagnose, mixed
from cnnlab.run.train import run

from conftest import FAST

LIMITS = Thresholds()


def healthy(epochs: int = 10) -> dict[str, dict[int, float]]:
    """Both accuracies climbing together, losses falling, a decaying rate: by epoch."""
    columns = {
        "train/loss": [2.0 / (1 + e) for e in range(epochs)],
        "val/loss": [2.1 / (1 + e) for e in range(epochs)],
        "train/acc": [0.5 + 0.045 * e for e in range(epochs)],
        "val/acc": [0.48 + 0.043 * e for e in range(epochs)],
        "lr-SGD": [0.1 * 0.8**e for e in range(epochs)],
    }
    return {key: dict(enumerate(values)) for key, values in columns.items()}


def rules(series, limits=LIMITS, **kwargs) -> list[str]:
    return [f.rule for f in diagnose(series, limits, **kwargs)]


def test_healthy_curves_say_nothing():
    assert rules(healthy()) == []


def test_a_gap_that_opens_is_over_fitting_with_its_numbers():
    series = healthy()
    series["train/acc"] = {e: min(1.0, 0.6 + 0.06 * e) for e in range(10)}
    series["val/acc"] = {e: 0.6 + 0.02 * min(e, 4) for e in range(10)}
    series["val/loss"] = {e: 1.0 - 0.1 * e if e < 4 else 0.6 + 0.05 * (e - 4) for e in range(10)}
    (finding,) = diagnose(series, LIMITS)
    assert finding.rule == "over-fitting"
    assert "gap 0.320 >= 0.1" in finding.says and "up 42% since epoch 4" in finding.says
    assert "increase regularisation" in finding.says
    assert rules(series, replace(LIMITS, overfit_gap=0.4)) == []  # the threshold is an option
    assert rules(series, mixed=True) == []  # mixed batches' accuracy is not comparable


def test_flat_and_close_curves_below_the_mark_are_under_fitting():
    series = healthy()
    series["train/acc"] = {e: 0.40 + 0.03 * min(e, 6) for e in range(10)}
    series["val/acc"] = {e: 0.39 + 0.03 * min(e, 6) for e in range(10)}
    (finding,) = diagnose(series, LIMITS)
    assert finding.rule == "under-fitting" and "more capacity or a higher rate" in finding.says
    assert "train acc 0.580 and val 0.570" in finding.says
    series["train/acc"][9] = 0.95  # a model that fits its training set does not under-fit
    assert "under-fitting" not in rules(series)


def test_a_loss_spike_or_bouncing_loss_means_the_rate_is_too_high():
    spiked = healthy()
    spiked["train/loss"][5] = 3 * spiked["train/loss"][4]
    (finding,) = diagnose(spiked, LIMITS)
    assert finding.rule == "rate too high" and "spiked 3.00x at epoch 5" in finding.says
    bouncing = healthy()
    bouncing["train/loss"] = dict(enumerate([2.0, 1.5, 1.6, 1.4, 1.5, 1.3, 1.4, 1.2, 1.3, 1.1]))
    (finding,) = diagnose(bouncing, LIMITS)
    assert finding.rule == "rate too high" and "rose in 4 of 9 epochs" in finding.says
    assert rules(bouncing, replace(LIMITS, bounce_share=0.5)) == []


def test_a_loss_that_rises_with_the_rate_is_not_the_rates_fault():
    restarts = healthy()  # cosine restarts: the rate jumps back up, and the loss with it
    restarts["lr-SGD"] = dict(enumerate([0.1, 0.05, 0.01] * 3 + [0.1]))
    restarts["train/loss"] = dict(enumerate([2.0, 1.5, 1.2, 1.9, 1.4, 1.1, 1.8, 1.3, 1.0, 1.7]))
    assert "rate too high" not in rules(restarts)


def test_divergence():
    series = healthy()
    series["train/loss"] = dict(enumerate([2.3, 2.0, 3.5, 6.0, 9.0]))
    assert "diverged" in rules(series)
    series["train/loss"] = dict(enumerate([2.3, 2.0, float("nan")]))
    (finding, *_) = diagnose(series, LIMITS)
    assert finding.rule == "diverged" and "nan at epoch 2" in finding.says


def test_a_plateau_at_a_constant_rate_asks_for_a_schedule():
    series = healthy(12)
    series["val/acc"] = {e: min(0.7, 0.5 + 0.05 * e) for e in range(12)}
    series["train/acc"] = {e: min(0.78, 0.5 + 0.05 * e) for e in range(12)}
    series["lr-SGD"] = {e: 0.1 for e in range(12)}
    (finding,) = diagnose(series, LIMITS)
    assert finding.rule == "plateau" and "at a constant rate 0.1" in finding.says
    series["lr-SGD"] = {e: 0.1 * 0.8**e for e in range(12)}  # the schedule is already at it
    assert rules(series) == []


def test_dead_units_past_the_share():
    series = healthy()
    series["dead_units/share"] = {e: 0.05 * e for e in range(10)}
    (finding,) = diagnose(series, LIMITS)
    assert finding.rule == "dead units" and "45% of the units" in finding.says
    assert rules(series, replace(LIMITS, dead_share=0.5)) == []


def test_thresholds_are_checked_options():
    assert read(Thresholds, {"overfit_gap": 0.2}, "diagnose").overfit_gap == 0.2
    with pytest.raises(ConfigError, match=r"diagnose.overfit_gap=2: expected a number in \[0, 1\)"):
        read(Thresholds, {"overfit_gap": 2}, "diagnose")
    with pytest.raises(ConfigError, match="diagnose has no option gap; it takes: overfit_gap"):
        read(Thresholds, {"gap": 0.1}, "diagnose")


def test_mixed_batches_are_read_from_the_settings():
    assert mixed({"augment.mixup_alpha": 0.2, "augment.mix_prob": 1.0})
    assert mixed({"augment.cutmix_alpha": 1.0})
    assert not mixed({"augment.mixup_alpha": 0.2, "augment.mix_prob": 0.0})
    assert not mixed({"augment.mixup_alpha": 0.0})


def test_a_run_that_memorises_random_labels_is_told_it_over_fits(make_cfg, tmp_path):
    # Random labels: the training images can be learnt by heart, the held-out ones not at all.
    cfg = make_cfg(
        [
            "data=fake",
            "data.image_size=16",
            "data.dataset.train_size=160",
            "data.val_split=0.2",
            "model=base_cnn",
            "augment=none",
            "norm=none",
            "optimizer=adam",
            "scheduler=none",
            "model.dropout=0",
            "trainer.max_epochs=8",
            *FAST,
        ]
    )
    run(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    series = epoch_series(tmp_path / "run")  # what the rules read: the rate too, by epoch
    assert set(series["lr-Adam"]) == set(series["val/acc"]) == set(range(8))
    found = {f["rule"]: f["says"] for f in metrics["diagnosis"]}
    assert "over-fitting" in found, metrics["diagnosis"]
    train_acc = float(found["over-fitting"].split("train acc ")[1].split()[0])
    assert train_acc > 0.5  # it learnt its training images (chance is 0.1)


def test_train_yaml_shows_the_thresholds_runs_and_reports_use(make_cfg):
    assert read(Thresholds, make_cfg([]).diagnose, "diagnose") == Thresholds()


def test_curves_of_mixed_batches_are_labelled_so():
    from cnnlab.callbacks.curves import curves_figure

    def labels(figure) -> set[str]:
        return {t.get_text() for ax in figure.axes[:2] for t in ax.get_legend().get_texts()}

    assert labels(curves_figure(healthy(), mixed=True)) == {"train (mixed)", "val"}
    assert labels(curves_figure(healthy())) == {"train", "val"}
