"""Reading a range test's curve (cnnlab.tuning.lr_range): the suggestion, the cyclic range, the
plot."""

import math

import pytest
import torch

from cnnlab.tuning.lr_range import plot, read, smooth

RATES = torch.logspace(-6, 0, 100).tolist()  # an exponential sweep over six decades


def falling_at(centre: float, noise: float = 0.0, seed: int = 0) -> list[float]:
    """A loss that falls from 2.3 to 0.3 around ``centre`` (steepest there, by log rate), then
    rises again past 30 x centre, with noise of that size."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor(RATES).log10()
    loss = 1.3 - torch.tanh(2 * (x - math.log10(centre)))
    loss = loss + 4 * (x - math.log10(30 * centre)).clamp(min=0) ** 2
    return (loss + noise * torch.randn(len(x), generator=gen)).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_the_suggestion_is_the_steepest_fall_by_log_rate_and_the_top_where_the_loss_turns(seed):
    losses = falling_at(1e-3, noise=0.05, seed=seed)
    reading = read(RATES, losses, exponential=True)
    assert abs(math.log10(RATES[reading.suggestion]) - -3) < 0.35  # within a third of a decade
    clean = falling_at(1e-3)
    assert clean[reading.top] - min(clean) < 0.05  # the lowest loss, up to the noise
    assert RATES[reading.top] < 30e-3 * 2  # not past where it rises
    assert not reading.still_falling


def test_the_smoothing_has_no_lag_and_stops_at_the_first_loss_that_is_not_finite():
    line = [float(i) for i in range(100)]
    assert smooth(line)[40:60] == pytest.approx(line[40:60], abs=0.01)  # centred: no lag
    assert len(smooth([2.0, 1.0, float("nan"), 0.5])) == 2
    assert len(smooth([2.0, float("inf")])) == 1


def test_a_loss_that_never_falls_has_no_reading_and_one_still_falling_says_so():
    assert read(RATES, [2.3 + r for r in RATES], exponential=True) is None
    assert read(RATES[:3], [3.0, 2.0, 1.0], exponential=True) is None  # too few steps
    reading = read(RATES, falling_at(1e-1), exponential=True)  # turns past the last rate
    assert reading.still_falling and reading.top == len(RATES) - 1


def test_a_linear_sweep_is_read_by_the_rate_itself():
    rates = torch.linspace(0.01, 1, 100).tolist()
    losses = [2 - math.tanh(10 * (r - 0.4)) for r in rates]
    reading = read(rates, losses, exponential=False)
    assert rates[reading.suggestion] == pytest.approx(0.4, abs=0.02)


def test_the_plot_marks_the_suggestion_and_shades_the_range():
    losses = falling_at(1e-3) + [float("nan")] * 0
    losses[-5:] = [50.0, 1e4, float("inf"), float("nan"), float("nan")]  # diverged at the end
    reading = read(RATES, losses, exponential=True)
    figure = plot(RATES, losses, reading, exponential=True)
    (axes,) = figure.axes
    labels = [line.get_label() for line in axes.get_lines()]
    assert labels == ["loss of the step", "smoothed", "suggestion"]
    assert axes.get_xscale() == "log" and axes.get_ylim()[1] < 1e4  # the spike is cut off
    (band,) = axes.patches
    left, right = band.get_x(), band.get_x() + band.get_width()
    assert right == pytest.approx(RATES[reading.top]) and left == pytest.approx(right / 4)


def test_a_curve_that_diverges_is_not_still_falling_and_its_top_lies_before_the_divergence():
    losses = [2.3 - 0.02 * i for i in range(60)] + [float("inf")] + [float("nan")] * 39
    reading = read(RATES, losses, exponential=True)
    assert reading.diverged_at == 60 and not reading.still_falling
    assert reading.top < 60
