"""Sample-ratio mismatch against scipy's chi-square test."""

from __future__ import annotations

import pytest
from scipy import stats

from controller.stats import DEFAULT_SRM_ALPHA, sample_ratio_mismatch


def test_an_even_split_matches_scipy_and_a_hand_computed_statistic() -> None:
    result = sample_ratio_mismatch([50_000, 51_000], [50, 50])
    # Expected 50,500 each: chi2 = 2 * 500**2 / 50,500.
    assert result.statistic == pytest.approx(2 * 500**2 / 50_500, rel=1e-12)
    expected = stats.chisquare([50_000, 51_000], [50_500, 50_500])
    assert result.pvalue == pytest.approx(float(expected.pvalue), rel=1e-12)
    assert result.expected == (50_500.0, 50_500.0)
    # p ≈ 0.0017: suspicious, yet not below the strict default threshold.
    assert 0.001 < result.pvalue < 0.002
    assert result.alpha == DEFAULT_SRM_ALPHA == 0.001
    assert not result.mismatch
    assert sample_ratio_mismatch([50_000, 51_000], [50, 50], alpha=0.01).mismatch


def test_an_uneven_split_with_three_arms() -> None:
    observed, weights = [80_400, 10_200, 9_400], [80, 10, 10]
    result = sample_ratio_mismatch(observed, weights)
    expected = stats.chisquare(observed, [80_000, 10_000, 10_000])
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert result.pvalue == pytest.approx(float(expected.pvalue), rel=1e-12)
    assert result.mismatch


def test_counts_that_fit_the_split_are_no_mismatch() -> None:
    result = sample_ratio_mismatch([9_010, 990], [0.9, 0.1])
    assert result.pvalue > 0.5
    assert not result.mismatch


def test_too_few_observations_is_insufficient_data_and_never_a_mismatch() -> None:
    for observed in ([0, 0], [3, 40]):
        result = sample_ratio_mismatch(observed, [10, 90])
        assert result.insufficient_data
        assert not result.mismatch
        assert result.pvalue == 1.0


@pytest.mark.parametrize(
    ("observed", "weights"),
    [([10, 10], [1, 0]), ([10, 10], [1]), ([10], [1]), ([10, -1], [1, 1]), ([10, 10], [1, float("nan")])],
)
def test_malformed_input_is_refused(observed: list[float], weights: list[float]) -> None:
    with pytest.raises(ValueError):
        sample_ratio_mismatch(observed, weights)
