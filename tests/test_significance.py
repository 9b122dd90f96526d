"""The report's statistics, held against scipy's own functions and the textbook's power table."""

import math

import pytest
from scipy import stats

from cnnlab.results.significance import (
    placed,
    seeds_needed,
    summary,
    t_test_power,
    verdict,
    welch_p,
)

ELU_BN = [0.9167, 0.9141, 0.9188]
BN = [0.9113, 0.9102, 0.9131]
NOISY = [0.905, 0.921, 0.912, 0.899]


@pytest.mark.parametrize("values", [ELU_BN, BN, NOISY, [0.5, 0.5001]])
def test_the_interval_is_students_t_interval_of_the_mean(values):
    s = summary(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=s.mean, scale=stats.sem(values))
    assert (s.n, s.low, s.high) == (len(values), pytest.approx(low), pytest.approx(high))
    assert s.mean == pytest.approx(sum(values) / len(values))
    assert s.std == pytest.approx(stats.tstd(values))
    narrow = summary(values, alpha=0.1)  # a 90% interval is narrower
    assert s.low < narrow.low < narrow.high < s.high


def test_one_run_has_no_interval():
    s = summary([0.91])
    assert (s.n, s.mean, s.std, s.low, s.high) == (1, 0.91, None, None, None)
    assert placed(0.9, s) == "one run: no interval"


@pytest.mark.parametrize(("a", "b"), [(ELU_BN, BN), (BN, NOISY), (NOISY, ELU_BN)])
def test_the_comparison_is_welchs_t_test(a, b):
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p(a, b) == pytest.approx(expected)
    assert welch_p(a, b) != pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue)


def test_runs_without_any_spread_differ_for_certain_or_not_at_all():
    assert welch_p([0.9, 0.9], [0.8, 0.8]) == 0.0
    assert welch_p([0.9, 0.9], [0.9, 0.9]) == 1.0


def test_verdicts_in_plain_words():
    p = stats.ttest_ind(BN, ELU_BN, equal_var=False).pvalue
    assert p < 0.05
    assert verdict(ELU_BN, ELU_BN, is_best=True) == "best"
    assert verdict(BN, ELU_BN, is_best=False) == f"worse (p = {p:.3f})"
    p = stats.ttest_ind(NOISY, ELU_BN, equal_var=False).pvalue
    assert p > 0.05
    said = verdict(NOISY, ELU_BN, is_best=False)
    assert said == f"not distinguishable from the best at n = 4 and 3 (p = {p:.3f})"
    assert verdict(BN, BN[::-1], is_best=False).startswith(
        "not distinguishable from the best at n = 3 "
    )
    assert verdict([0.9], ELU_BN, is_best=False) == "one run: no interval"
    assert verdict(BN, [0.92], is_best=False) == "the best has one run: no test"
    assert verdict([0.92], [0.92], is_best=True) == "best (one run: no interval)"
    # at a stricter level the same difference is no longer called
    assert verdict(BN, ELU_BN, is_best=False, alpha=1e-6).startswith("not distinguishable")


def test_a_published_figure_is_placed_against_the_interval():
    s = summary(ELU_BN)
    assert placed(s.mean, s) == "inside the interval"
    assert placed(s.high + 1e-4, s) == "above the interval"
    assert placed(s.low - 1e-4, s) == "below the interval"


@pytest.mark.parametrize(("effect", "n"), [(0.5, 64), (0.8, 26), (1.0, 17), (2.0, 6)])
def test_seeds_needed_match_the_power_table_of_the_t_test(effect, n):
    # Two rows with unit spread (their values -1, 0, 1 shifted) whose means are ``effect`` apart:
    # the runs per row a two-sided t-test at 5% needs for 80% power (Cohen's table: 64, 26, 17).
    a = [-1.0, 0.0, 1.0]
    b = [v + effect for v in a]
    assert seeds_needed(a, b, most=1000) == n
    assert t_test_power(effect, n) >= 0.8 > t_test_power(effect, n - 1)


def test_seeds_needed_beyond_the_most_asked_or_without_a_difference():
    a = [-1.0, 0.0, 1.0]
    assert seeds_needed(a, [v + 0.5 for v in a], most=20) is None  # needs 64
    assert seeds_needed(a, a, most=1000) is None
    assert seeds_needed([0.9, 0.9], [0.8, 0.8], most=10) == 2


def test_power_by_simulation_agrees_with_the_noncentral_t():
    import numpy as np

    rng = np.random.default_rng(0)
    n, effect, trials = 10, 1.0, 4000
    a = rng.normal(0, 1, (trials, n))
    b = rng.normal(effect, 1, (trials, n))
    found = (stats.ttest_ind(a, b, axis=1).pvalue < 0.05).mean()
    assert math.isclose(found, t_test_power(effect, n), abs_tol=0.03)
