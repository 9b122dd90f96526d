"""Reading a run's curves as the CNN tricks slides teach: each rule that fires says the numbers that
fired it and the advice. Under mixup or cutmix the training loss and accuracy are the mixed
batches', not comparable with validation's: the rules that compare the two are left out."""

import math
from dataclasses import asdict, dataclass
from typing import Annotated

from annotated_types import Ge, Gt

from cnnlab.options import Count, Fraction

Series = dict[str, dict[int, float]]


@dataclass(frozen=True)
class Thresholds:
    """The ``diagnose`` options: when each rule fires. Also their declaration."""

    overfit_gap: Fraction = 0.10  # train acc - val acc at the end, at least
    underfit_gap: Fraction = 0.03  # train and val acc this close ...
    underfit_train_acc: Fraction = 0.90  # ... and training accuracy below this
    flat_epochs: Count = 3  # "flat": over this many last epochs ...
    flat_gain: Fraction = 0.01  # ... accuracy gained less than this
    spike_ratio: Annotated[float, Gt(1)] = 1.5  # a training loss this many times the epoch's before
    bounce_share: Fraction = 0.25  # the share of epochs whose training loss rose, at least ...
    bounce_rise: Fraction = 0.02  # ... each by this fraction (epochs whose rate rose aside)
    diverge_ratio: Annotated[float, Gt(1)] = 2.0  # the last training loss over the first
    plateau_epochs: Count = 5  # no gain in validation accuracy for this many epochs ...
    plateau_gain: Fraction = 0.002  # ... above this, at a constant rate
    dead_share: Fraction = 0.3  # share of units never active, at least
    min_epochs: Annotated[int, Ge(2)] = 3  # the trend rules need this many epochs


@dataclass(frozen=True)
class Finding:
    rule: str  # over-fitting, under-fitting, rate too high, diverged, plateau, dead units
    says: str  # the numbers that fired it, and the advice

    def __str__(self) -> str:
        return f"{self.rule}: {self.says}"


def diagnose(series: Series, limits: Thresholds, mixed: bool = False) -> list[Finding]:
    """Every rule that fires on ``series`` (see the module's docstring)."""
    val = "val" if "val/acc" in series else "val_on_test"
    curves = _Curves(series, val)
    rules = [_diverged, _rate_too_high, _dead_units]
    if not mixed and curves.has("train/acc", f"{val}/acc"):
        rules += [_overfitting, _underfitting]
    rules.append(_plateau)
    found = [rule(curves, limits) for rule in rules]
    return [f for f in found if f is not None]


def mixed(settings: dict) -> bool:
    """Whether a run of these settings (``cnnlab.config.settings``) trained on mixed batches."""
    alphas = settings.get("augment.mixup_alpha") or 0, settings.get("augment.cutmix_alpha") or 0
    return max(alphas) > 0 and settings.get("augment.mix_prob", 1.0) > 0


def as_records(findings: list[Finding]) -> list[dict[str, str]]:
    return [asdict(f) for f in findings]


class _Curves:
    def __init__(self, series: Series, val: str):
        self.series, self.val = series, val

    def has(self, *keys: str) -> bool:
        return all(self.series.get(k) for k in keys)

    def points(self, key: str) -> list[tuple[int, float]]:
        return sorted(self.series.get(key, {}).items())

    def last(self, key: str) -> tuple[int, float]:
        return self.points(key)[-1]

    def rate(self) -> dict[int, float]:
        """The first learning rate logged (``lr-SGD``, ...), by epoch; {} if none was."""
        keys = sorted(k for k in self.series if k.startswith("lr-"))
        return self.series[keys[0]] if keys else {}


def _diverged(c: _Curves, t: Thresholds) -> Finding | None:
    loss = c.points("train/loss")
    bad = [(e, v) for e, v in loss if not math.isfinite(v)]
    if bad:
        epoch, value = bad[0]
        return Finding("diverged", f"training loss {value} at epoch {epoch}: lower the rate")
    if len(loss) < 2:
        return None
    (e0, first), (e1, last) = loss[0], loss[-1]
    if last >= t.diverge_ratio * first:
        return Finding(
            "diverged",
            f"training loss rose from {first:.3g} (epoch {e0}) to {last:.3g} (epoch {e1}), "
            f"{last / first:.1f}x >= {t.diverge_ratio}x: lower the rate, or clip gradients",
        )
    return None


def _rate_too_high(c: _Curves, t: Thresholds) -> Finding | None:
    loss, rate = c.points("train/loss"), c.rate()
    rises = []  # (epoch, ratio) where the loss rose though the rate did not
    for (_, before), (epoch, now) in zip(loss, loss[1:], strict=False):
        rate_rose = rate.get(epoch, 0) > rate.get(epoch - 1, math.inf)
        if before > 0 and now > before * (1 + t.bounce_rise) and not rate_rose:
            rises.append((epoch, now / before))
    if not rises:
        return None
    epoch, worst = max(rises, key=lambda r: r[1])
    if worst >= t.spike_ratio:
        return Finding(
            "rate too high",
            f"training loss spiked {worst:.2f}x at epoch {epoch} (>= {t.spike_ratio}x): lower "
            "the rate, warm it up, or clip gradients",
        )
    share = len(rises) / (len(loss) - 1)
    if len(loss) >= t.min_epochs and len(rises) >= 2 and share >= t.bounce_share:
        return Finding(
            "rate too high",
            f"training loss rose in {len(rises)} of {len(loss) - 1} epochs ({share:.0%} >= "
            f"{t.bounce_share:.0%}; by > {t.bounce_rise:.0%}), bouncing: lower the rate",
        )
    return None


def _overfitting(c: _Curves, t: Thresholds) -> Finding | None:
    epoch, train = c.last("train/acc")
    val = c.series[f"{c.val}/acc"].get(epoch)
    if val is None or train - val < t.overfit_gap:
        return None
    says = f"train acc {train:.3f} vs {c.val} {val:.3f} at epoch {epoch}, gap {train - val:.3f}"
    says += f" >= {t.overfit_gap}"
    losses = c.points(f"{c.val}/loss")
    if losses:
        low_epoch, low = min(losses, key=lambda p: p[1])
        last_epoch, last = losses[-1]
        if last_epoch != low_epoch and low > 0:
            says += f"; {c.val} loss {last:.3g}, up {last / low - 1:.0%} since epoch {low_epoch}"
    return Finding(
        "over-fitting",
        f"{says}: increase regularisation (weight decay, dropout, augmentation) or stop earlier",
    )


def _underfitting(c: _Curves, t: Thresholds) -> Finding | None:
    train, val = c.points("train/acc"), c.points(f"{c.val}/acc")
    if len(val) < max(t.min_epochs, t.flat_epochs + 1) or len(train) < t.flat_epochs + 1:
        return None
    (epoch, train_now), (_, val_now) = train[-1], val[-1]
    gain = max(train_now - train[-1 - t.flat_epochs][1], val_now - val[-1 - t.flat_epochs][1])
    close = abs(train_now - val_now) < t.underfit_gap
    if not (close and gain < t.flat_gain and train_now < t.underfit_train_acc):
        return None
    return Finding(
        "under-fitting",
        f"train acc {train_now:.3f} and {c.val} {val_now:.3f} at epoch {epoch} (within "
        f"{t.underfit_gap}, training < {t.underfit_train_acc}), gained {gain:.3f} < "
        f"{t.flat_gain} in the last {t.flat_epochs} epochs: more capacity or a higher rate",
    )


def _plateau(c: _Curves, t: Thresholds) -> Finding | None:
    key = f"{c.val}/acc" if c.has(f"{c.val}/acc") else "train/acc"
    points, rate = c.points(key), c.rate()
    if len(points) <= t.plateau_epochs or not rate:
        return None
    before = max(v for _, v in points[: -t.plateau_epochs])
    recent = points[-t.plateau_epochs :]
    rates = [rate.get(e) for e, _ in recent]
    if None in rates or max(rates) > min(rates) * 1.01:
        return None  # the rate moved: the schedule is already at work
    gain = max(v for _, v in recent) - before
    if gain > t.plateau_gain:
        return None
    return Finding(
        "plateau",
        f"{key} gained {gain:.4f} <= {t.plateau_gain} in the last {t.plateau_epochs} epochs "
        f"at a constant rate {rates[-1]:.3g}: drop the rate (scheduler=multistep, plateau)",
    )


def _dead_units(c: _Curves, t: Thresholds) -> Finding | None:
    if not c.has("dead_units/share"):
        return None
    epoch, share = c.last("dead_units/share")
    if share < t.dead_share:
        return None
    return Finding(
        "dead units",
        f"{share:.0%} of the units never active at epoch {epoch} (>= {t.dead_share:.0%}): try "
        "activation=leaky_relu or elu, a lower rate, or init=he",
    )
