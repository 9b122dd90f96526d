"""What a handful of seeds can say (two rows a few tenths apart are often one recipe seen through
seed noise): a row's mean and its interval, mean ± t(1 - alpha/2, n-1) s / sqrt(n) (Student's
t); whether it differs from the best row, by Welch's t-test (which does not assume the two rows
spread alike); and the seeds a two-sided t-test at the same level needs to find the observed
difference 80% of the time (its power), from the noncentral t."""

import math
import statistics
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.05  # the level of the intervals (1 - ALPHA) and of the tests
POWER = 0.8


@dataclass(frozen=True)
class Summary:
    """n values' mean, sample standard deviation and 95% interval (None where n < 2)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


def summary(values: list[float], alpha: float = ALPHA) -> Summary:
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return Summary(n, mean, None, None, None)
    std = statistics.stdev(values)
    half = stats.t.ppf(1 - alpha / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch_p(a: list[float], b: list[float]) -> float:
    """Welch's two-sided p-value; rows with no spread at all differ (p = 0) if their means do."""
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def verdict(row: list[float], best: list[float], is_best: bool, alpha: float = ALPHA) -> str:
    """A row's values against the best row's, in plain words."""
    if is_best:
        return "best" if len(row) > 1 else "best (one run: no interval)"
    if len(row) < 2:
        return "one run: no interval"
    if len(best) < 2:
        return "the best has one run: no test"
    p = welch_p(row, best)
    if p < alpha:
        return f"worse ({_p(p)})"
    at = f"n = {len(row)}" if len(row) == len(best) else f"n = {len(row)} and {len(best)}"
    return f"not distinguishable from the best at {at} ({_p(p)})"


def seeds_needed(
    a: list[float], b: list[float], most: int, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """The runs per row at which a t-test finds the difference ``power`` of the time, given the
    rows' pooled spread; None if more than ``most`` (or if there is no difference to find)."""
    diff = abs(statistics.fmean(a) - statistics.fmean(b))
    spread = math.sqrt((statistics.variance(a) + statistics.variance(b)) / 2)
    if diff == 0:
        return None
    if spread == 0:
        return 2
    effect = diff / spread  # Cohen's d
    for n in range(2, most + 1):
        if t_test_power(effect, n, alpha) >= power:
            return n
    return None


def t_test_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """The power of a two-sided two-sample t-test with ``n`` runs a row; ``effect``: Cohen's d."""
    df = 2 * n - 2
    shift = effect * math.sqrt(n / 2)
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def placed(value: float, interval: Summary) -> str:
    """Where ``value`` (a published figure) lies against the interval."""
    if interval.low is None:
        return "one run: no interval"
    if value < interval.low:
        return "below the interval"
    if value > interval.high:
        return "above the interval"
    return "inside the interval"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
