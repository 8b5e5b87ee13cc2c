"""Two-proportion tests against statsmodels, Newcombe's published intervals and the textbook z-test."""

from __future__ import annotations

import math
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from statsmodels.stats import proportion as sm_proportion

from controller.stats import (
    DEFAULT_PROPORTION_TAU2,
    mixture_variance,
    normal_mixture_test,
    sequential_proportion_test,
    two_proportion_test,
)
from controller.stats.proportions import ProportionMethod
from controller.stats.results import Alternative


def test_score_method_is_the_textbook_pooled_z_test() -> None:
    result = two_proportion_test(stable_successes=50, stable_trials=1000, candidate_successes=60, candidate_trials=1000)
    pooled = 110 / 2000
    z = (0.060 - 0.050) / math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 1000))
    assert result.difference == pytest.approx(0.01)
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.pvalue == pytest.approx(2 * norm.sf(z), rel=1e-12)
    assert result.statistic == pytest.approx(0.980816, abs=1e-6)
    assert result.method == "score"
    assert not result.insufficient_data


def test_wald_method_is_the_textbook_unpooled_z_test_and_interval() -> None:
    result = two_proportion_test(
        stable_successes=50, stable_trials=1000, candidate_successes=60, candidate_trials=800, method="wald"
    )
    p_s, p_c = 50 / 1000, 60 / 800
    se = math.sqrt(p_s * (1 - p_s) / 1000 + p_c * (1 - p_c) / 800)
    assert result.statistic == pytest.approx((p_c - p_s) / se, rel=1e-12)
    assert result.pvalue == pytest.approx(2 * norm.sf((p_c - p_s) / se), rel=1e-12)
    margin = norm.ppf(0.975) * se
    assert result.confidence_interval() == pytest.approx((p_c - p_s - margin, p_c - p_s + margin), rel=1e-9)


@pytest.mark.parametrize(
    ("candidate", "stable", "low", "high"), [((56, 70), (48, 80), 0.0524, 0.3339), ((9, 10), (3, 10), 0.1705, 0.8090)]
)
def test_score_interval_matches_newcombes_published_values(
    candidate: tuple[int, int], stable: tuple[int, int], low: float, high: float
) -> None:
    # Newcombe (1998), "Interval estimation for the difference between independent proportions", method 10.
    result = two_proportion_test(
        stable_successes=stable[0],
        stable_trials=stable[1],
        candidate_successes=candidate[0],
        candidate_trials=candidate[1],
    )
    assert result.ci_low == pytest.approx(low, abs=5e-5)
    assert result.ci_high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize("method", ["score", "wald"])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_matches_statsmodels(method: ProportionMethod, alternative: Alternative) -> None:
    result = two_proportion_test(
        stable_successes=130,
        stable_trials=2400,
        candidate_successes=171,
        candidate_trials=2500,
        method=method,
        alternative=alternative,
        alpha=0.1,
    )
    statsmodels_alternative = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}[alternative]
    expected = sm_proportion.test_proportions_2indep(
        171, 2500, 130, 2400, method=method, compare="diff", correction=False, alternative=statsmodels_alternative
    )
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert result.pvalue == pytest.approx(float(expected.pvalue), rel=1e-12)
    interval_method = "newcomb" if method == "score" else "wald"
    two_sided_alpha = 0.1 if alternative == "two-sided" else 0.2
    low, high = sm_proportion.confint_proportions_2indep(
        171, 2500, 130, 2400, method=interval_method, compare="diff", alpha=two_sided_alpha, correction=False
    )
    expected_interval = {"two-sided": (low, high), "greater": (low, 1.0), "less": (-1.0, high)}[alternative]
    assert result.confidence_interval() == pytest.approx(expected_interval, rel=1e-12)


def test_another_confidence_level_recomputes_the_interval() -> None:
    result = two_proportion_test(stable_successes=50, stable_trials=1000, candidate_successes=60, candidate_trials=1000)
    low, high = sm_proportion.confint_proportions_2indep(
        60, 1000, 50, 1000, method="newcomb", alpha=0.01, correction=False
    )
    assert result.confidence_interval(0.99) == pytest.approx((low, high), rel=1e-12)


@pytest.mark.parametrize("method", ["score", "wald"])
def test_rates_of_zero_or_one_in_both_arms_do_not_crash(method: ProportionMethod) -> None:
    # pytest turns warnings into errors, so this also checks that statsmodels' divisions by zero stay quiet.
    for successes in (0, 100):
        result = two_proportion_test(
            stable_successes=successes,
            stable_trials=100,
            candidate_successes=successes,
            candidate_trials=100,
            method=method,
        )
        assert (result.statistic, result.pvalue, result.difference) == (0.0, 1.0, 0.0)
        assert math.isfinite(result.ci_low) and math.isfinite(result.ci_high)
    apart = two_proportion_test(
        stable_successes=0,
        stable_trials=100,
        candidate_successes=100,
        candidate_trials=100,
        method=method,
    )
    assert apart.pvalue < 1e-40
    one_empty_cell = two_proportion_test(
        stable_successes=0,
        stable_trials=100,
        candidate_successes=1,
        candidate_trials=100,
        method=method,
    )
    assert 0.3 < one_empty_cell.pvalue < 0.4


def test_no_trials_is_insufficient_data() -> None:
    result = two_proportion_test(stable_successes=0, stable_trials=0, candidate_successes=3, candidate_trials=10)
    assert result.insufficient_data
    assert (result.pvalue, result.statistic, result.difference) == (1.0, 0.0, 0.0)
    assert result.confidence_interval() == (-1.0, 1.0)
    assert result.confidence_interval(0.99) == (-1.0, 1.0)


@pytest.mark.parametrize(("stable_successes", "stable_trials"), [(5, 4), (-1, 4), (1, math.inf), (math.nan, 4)])
def test_impossible_counts_are_refused(stable_successes: float, stable_trials: float) -> None:
    with pytest.raises(ValueError):
        two_proportion_test(
            stable_successes=stable_successes, stable_trials=stable_trials, candidate_successes=1, candidate_trials=2
        )
    with pytest.raises(ValueError):
        sequential_proportion_test(
            stable_successes=stable_successes, stable_trials=stable_trials, candidate_successes=1, candidate_trials=2
        )


def test_sequential_test_uses_the_unpooled_variance_and_the_normal_mixture() -> None:
    result = sequential_proportion_test(
        stable_successes=500, stable_trials=10_000, candidate_successes=600, candidate_trials=9_000, tau2=4e-4
    )
    p_s, p_c = 0.05, 600 / 9_000
    variance = p_s * (1 - p_s) / 10_000 + p_c * (1 - p_c) / 9_000
    expected = normal_mixture_test(
        p_c - p_s, variance, tau2=4e-4, alpha=0.05, stable_samples=10_000, candidate_samples=9_000
    )
    assert result == expected
    log_lambda = 0.5 * math.log(variance / (variance + 4e-4)) + (p_c - p_s) ** 2 * 4e-4 / (
        2 * variance * (variance + 4e-4)
    )
    assert result.statistic == pytest.approx(log_lambda, rel=1e-12)
    assert result.pvalue == pytest.approx(min(1.0, math.exp(-log_lambda)), rel=1e-12)
    assert result.samples == 9_000


def test_sequential_default_mixture_looks_for_one_percentage_point() -> None:
    assert mixture_variance(0.01) == pytest.approx(DEFAULT_PROPORTION_TAU2)
    result = sequential_proportion_test(
        stable_successes=50, stable_trials=1000, candidate_successes=60, candidate_trials=1000
    )
    assert result.tau2 == DEFAULT_PROPORTION_TAU2


def test_sequential_floors_rates_of_zero_and_one_at_half_an_event() -> None:
    none = sequential_proportion_test(
        stable_successes=0, stable_trials=100, candidate_successes=0, candidate_trials=100
    )
    assert none.variance == pytest.approx(2 * 0.005 * 0.995 / 100)
    assert none.pvalue == 1.0
    # 100 trials cannot rule out a difference of a few percentage points.
    assert none.ci_low < -0.02 and none.ci_high > 0.02
    every = sequential_proportion_test(
        stable_successes=100, stable_trials=100, candidate_successes=100, candidate_trials=100
    )
    assert every.variance == pytest.approx(none.variance)
    apart = sequential_proportion_test(
        stable_successes=0, stable_trials=100, candidate_successes=100, candidate_trials=100
    )
    assert apart.pvalue < 1e-100
    assert apart.ci_low > 0.9


@pytest.mark.parametrize(("stable_trials", "candidate_trials"), [(0, 0), (0, 100), (100, 0.4)])
def test_sequential_without_trials_is_insufficient_data(stable_trials: float, candidate_trials: float) -> None:
    result = sequential_proportion_test(
        stable_successes=0, stable_trials=stable_trials, candidate_successes=0, candidate_trials=candidate_trials
    )
    assert result.insufficient_data
    assert (result.pvalue, result.statistic, result.effect) == (1.0, 0.0, 0.0)
    assert result.confidence_interval() == (-1.0, 1.0)


@st.composite
def _arm(draw: st.DrawFn) -> tuple[int, int]:
    trials = draw(st.integers(1, 50_000))
    return draw(st.integers(0, trials)), trials


@settings(derandomize=True, max_examples=60)
@given(stable=_arm(), candidate=_arm(), method=st.sampled_from(typing.get_args(ProportionMethod)))
def test_pvalues_are_probabilities_and_intervals_hold_the_estimate(
    stable: tuple[int, int], candidate: tuple[int, int], method: ProportionMethod
) -> None:
    fixed = two_proportion_test(
        stable_successes=stable[0],
        stable_trials=stable[1],
        candidate_successes=candidate[0],
        candidate_trials=candidate[1],
        method=method,
    )
    assert 0.0 <= fixed.pvalue <= 1.0
    assert fixed.ci_low - 1e-12 <= fixed.difference <= fixed.ci_high + 1e-12
    assert -1.0 <= fixed.ci_low <= fixed.ci_high <= 1.0
    sequential = sequential_proportion_test(
        stable_successes=stable[0],
        stable_trials=stable[1],
        candidate_successes=candidate[0],
        candidate_trials=candidate[1],
    )
    assert 0.0 <= sequential.pvalue <= 1.0
    assert sequential.ci_low <= sequential.effect <= sequential.ci_high
    assert math.isfinite(sequential.statistic)
