"""Difference of means: Welch's test against scipy on raw data, and the sequential test's variance."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from controller.stats import normal_mixture_test, sequential_mean_test, welch_test
from controller.stats.results import Alternative


def _samples(seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return rng.normal(10.0, 2.0, size=37), rng.normal(11.0, 3.5, size=52)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_matches_scipy_on_the_raw_data(alternative: Alternative) -> None:
    stable, candidate = _samples(7)
    result = welch_test(
        stable_mean=float(stable.mean()),
        stable_variance=float(stable.var(ddof=1)),
        stable_count=stable.size,
        candidate_mean=float(candidate.mean()),
        candidate_variance=float(candidate.var(ddof=1)),
        candidate_count=candidate.size,
        alternative=alternative,
        alpha=0.1,
    )
    expected = stats.ttest_ind(candidate, stable, equal_var=False, alternative=alternative)
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-10)
    assert result.pvalue == pytest.approx(float(expected.pvalue), rel=1e-10)
    assert result.df == pytest.approx(float(expected.df), rel=1e-10)
    assert result.difference == pytest.approx(float(candidate.mean() - stable.mean()), rel=1e-12)
    assert result.confidence_interval() == pytest.approx(tuple(expected.confidence_interval(0.9)), rel=1e-10)
    assert result.confidence_interval(0.99) == pytest.approx(tuple(expected.confidence_interval(0.99)), rel=1e-10)
    assert result.samples == 37


def test_welch_with_constant_arms_knows_the_difference_exactly() -> None:
    same = welch_test(
        stable_mean=3.0,
        stable_variance=0.0,
        stable_count=10,
        candidate_mean=3.0,
        candidate_variance=0.0,
        candidate_count=10,
    )
    assert (same.statistic, same.pvalue) == (0.0, 1.0)
    apart = welch_test(
        stable_mean=3.0,
        stable_variance=0.0,
        stable_count=10,
        candidate_mean=4.0,
        candidate_variance=0.0,
        candidate_count=10,
    )
    assert (apart.statistic, apart.pvalue) == (math.inf, 0.0)
    assert apart.confidence_interval() == (1.0, 1.0)
    slower = welch_test(
        stable_mean=3.0,
        stable_variance=0.0,
        stable_count=10,
        candidate_mean=4.0,
        candidate_variance=0.0,
        candidate_count=10,
        alternative="less",
    )
    assert slower.pvalue == 1.0


def test_welch_needs_two_samples_per_arm() -> None:
    result = welch_test(
        stable_mean=3.0,
        stable_variance=1.0,
        stable_count=1,
        candidate_mean=5.0,
        candidate_variance=1.0,
        candidate_count=9,
    )
    assert result.insufficient_data
    assert (result.statistic, result.pvalue) == (0.0, 1.0)
    assert result.confidence_interval() == (-math.inf, math.inf)


def test_sequential_mean_test_uses_the_unpooled_variance_of_the_difference() -> None:
    stable, candidate = _samples(11)
    result = sequential_mean_test(
        stable_mean=float(stable.mean()),
        stable_variance=float(stable.var(ddof=1)),
        stable_count=stable.size,
        candidate_mean=float(candidate.mean()),
        candidate_variance=float(candidate.var(ddof=1)),
        candidate_count=candidate.size,
        tau2=0.25,
        alpha=0.1,
    )
    variance = float(candidate.var(ddof=1) / candidate.size + stable.var(ddof=1) / stable.size)
    effect = float(candidate.mean() - stable.mean())
    assert result.variance == pytest.approx(variance, rel=1e-12)
    assert result.effect == pytest.approx(effect, rel=1e-12)
    expected = normal_mixture_test(effect, variance, tau2=0.25, alpha=0.1, stable_samples=37, candidate_samples=52)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.pvalue == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.confidence_interval() == pytest.approx(expected.confidence_interval(), rel=1e-12)
    # The always-valid interval pays for peeking: it is wider than the fixed-horizon one.
    welch = stats.ttest_ind(candidate, stable, equal_var=False).confidence_interval(0.9)
    assert result.ci_low < welch.low and result.ci_high > welch.high


def test_sequential_mean_test_needs_two_samples_per_arm() -> None:
    result = sequential_mean_test(
        stable_mean=1.0,
        stable_variance=0.0,
        stable_count=1,
        candidate_mean=2.0,
        candidate_variance=0.0,
        candidate_count=1,
        tau2=1.0,
    )
    assert result.insufficient_data
    assert (result.pvalue, result.statistic) == (1.0, 0.0)
    assert result.confidence_interval() == (-math.inf, math.inf)


@pytest.mark.parametrize(("mean", "variance", "count"), [(math.nan, 1.0, 3), (1.0, -1.0, 3), (1.0, 1.0, -3)])
def test_impossible_summaries_are_refused(mean: float, variance: float, count: float) -> None:
    with pytest.raises(ValueError):
        welch_test(
            stable_mean=mean,
            stable_variance=variance,
            stable_count=count,
            candidate_mean=0.0,
            candidate_variance=1.0,
            candidate_count=5,
        )
    with pytest.raises(ValueError):
        sequential_mean_test(
            stable_mean=mean,
            stable_variance=variance,
            stable_count=count,
            candidate_mean=0.0,
            candidate_variance=1.0,
            candidate_count=5,
            tau2=1.0,
        )
