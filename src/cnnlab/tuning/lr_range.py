"""Reading a learning-rate range test from the loss of every step, rather than through
Lightning's ``_LRFinder.suggestion``: that one differentiates the loss by the rate itself
(Lightning #21141: on an exponential sweep the smallest rates' noise, over the smallest spacing,
wins), and its smoothing divides by one step too many, which halves the first points (Lightning
2.6), so that the curve seems to rise before it falls."""

import math
from dataclasses import dataclass
from itertools import takewhile

import torch

# The smoothing's weight of the past: each pass follows about five steps, a window of about
# ten in all (on a 100-step sweep over six decades, a third of a decade each side).
BETA = 0.8
# Smith (2017), "Cyclical learning rates": the lower bound of a cyclic or one-cycle schedule
# is about a third or a quarter of the upper one.
BASE_SHARE = 4


@dataclass(frozen=True)
class Reading:
    """What a range test's curve says."""

    smoothed: list[float]  # the loss at each rate, smoothed (``smooth``)
    suggestion: int  # the index of the steepest fall (by log rate on an exponential sweep)
    top: int  # where the loss is lowest, from the suggestion on: the cyclic range's upper end
    still_falling: bool  # the loss fell to the last rate: the sweep never found the turn
    diverged_at: int | None  # the first step whose loss was not finite (the curve ends there)


def smooth(losses: list[float], beta: float = BETA) -> list[float]:
    """``losses`` up to the first that is not finite, smoothed without a lag: a debiased
    exponential moving average run forwards, then over that backwards. A forward average alone
    trails by ~1/(1-beta) steps, which on an exponential sweep moves every rate read off it up
    by a fraction of a decade; the whole curve is known here, so the smoothing can be centred."""
    finite = list(takewhile(math.isfinite, losses))
    return _average(_average(finite, beta)[::-1], beta)[::-1]


def _average(values: list[float], beta: float) -> list[float]:
    out, average = [], 0.0
    for i, value in enumerate(values):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta ** (i + 1)))
    return out


def read(rates: list[float], losses: list[float], exponential: bool) -> Reading | None:
    """The reading of a curve of one loss per rate; None when no point of it falls."""
    smoothed = smooth(losses)
    skip = max(1, len(smoothed) // 10)  # the first steps say more about the init than the rate
    if len(smoothed) - skip < 3:
        return None
    x = torch.tensor(rates[: len(smoothed)], dtype=torch.float64)
    x = x.log10() if exponential else x
    slope = torch.gradient(torch.tensor(smoothed, dtype=torch.float64), spacing=[x])[0]
    steepest = int(slope[skip:-1].argmin()) + skip
    if slope[steepest] >= 0:
        return None
    top = min(range(steepest, len(smoothed)), key=lambda i: smoothed[i])
    diverged = len(smoothed) if len(smoothed) < len(losses) else None
    still_falling = top == len(smoothed) - 1 and diverged is None
    return Reading(smoothed, steepest, top, still_falling, diverged)


def plot(rates: list[float], losses: list[float], reading: Reading, exponential: bool):
    """A matplotlib Figure of each step's loss, the smoothed curve, the suggestion, the range."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    shown = rates[: len(reading.smoothed)]
    axes.plot(shown, losses[: len(shown)], color="0.75", linewidth=0.8, label="loss of the step")
    axes.plot(shown, reading.smoothed, label="smoothed")
    best = reading.suggestion
    axes.plot(shown[best], reading.smoothed[best], "o", color="red", label="suggestion")
    top = shown[reading.top]
    axes.axvspan(top / BASE_SHARE, top, alpha=0.15, label="cyclic / one-cycle range")
    finite = [v for v in losses[: len(shown)] if math.isfinite(v)]
    highest = max(reading.smoothed[: reading.top + 1])  # a diverged step would flatten the rest
    axes.set_ylim(min(finite) - 0.05 * highest, min(max(finite), 1.5 * highest))
    if exponential:
        axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.legend()
    figure.tight_layout()
    return figure
