"""Grouped Mann–Whitney and Hodges–Lehmann against scipy and brute force on the expanded observations."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from controller.stats import (
    counts_from_cumulative,
    hodges_lehmann_grouped,
    mann_whitney_grouped,
    representative_values,
)
from controller.stats.results import Alternative

LATENCY_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf]


def _expand(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Raw observations: each bucket's observations tied at its index, so buckets stay distinct."""
    array = np.asarray(counts, dtype=np.int64)
    return np.repeat(np.arange(array.size, dtype=np.float64), array)


def _random_histograms(seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    stable = rng.multinomial(rng.integers(20, 400), rng.dirichlet(np.ones(len(LATENCY_BOUNDS))))
    # The candidate's mass leans toward slower buckets.
    weights = rng.dirichlet(np.ones(len(LATENCY_BOUNDS))) * np.linspace(0.5, 1.5, len(LATENCY_BOUNDS))
    candidate = rng.multinomial(rng.integers(20, 400), weights / weights.sum())
    return stable, candidate


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_matches_scipy_on_the_expanded_tied_observations(seed: int, alternative: Alternative) -> None:
    stable, candidate = _random_histograms(seed)
    result = mann_whitney_grouped(stable, candidate, LATENCY_BOUNDS, alternative=alternative)
    expected = stats.mannwhitneyu(
        _expand(candidate), _expand(stable), alternative=alternative, method="asymptotic", use_continuity=True
    )
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-12, abs=1e-9)
    assert result.pvalue == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-12)
    assert result.n_stable == stable.sum() and result.n_candidate == candidate.sum()
    assert result.probability_of_superiority == pytest.approx(result.statistic / (stable.sum() * candidate.sum()))
    assert result.samples == min(stable.sum(), candidate.sum())


def test_a_slower_candidate_is_greater_with_positive_z_and_shift() -> None:
    stable = [0, 40, 120, 60, 20, 5, 0, 0, 0, 0]
    candidate = [0, 10, 60, 90, 50, 20, 5, 0, 0, 0]
    greater = mann_whitney_grouped(stable, candidate, LATENCY_BOUNDS, alternative="greater")
    less = mann_whitney_grouped(stable, candidate, LATENCY_BOUNDS, alternative="less")
    assert greater.pvalue < 1e-6
    assert less.pvalue > 0.99
    assert greater.z > 3
    assert greater.probability_of_superiority > 0.6
    assert greater.hodges_lehmann > 0


def test_z_is_the_signed_continuity_corrected_standard_score() -> None:
    stable, candidate = _random_histograms(3)
    result = mann_whitney_grouped(stable, candidate, LATENCY_BOUNDS)
    n_s, n_c = float(stable.sum()), float(candidate.sum())
    ties = stable + candidate
    n = n_s + n_c
    sd = math.sqrt(n_s * n_c / 12 * ((n + 1) - float(np.sum(ties**3 - ties)) / (n * (n - 1))))
    deviation = result.statistic - n_s * n_c / 2
    assert result.z == pytest.approx(math.copysign(abs(deviation) - 0.5, deviation) / sd, rel=1e-12)


def test_every_observation_in_one_bucket_is_no_evidence() -> None:
    result = mann_whitney_grouped([0, 7, 0], [0, 5, 0], [1.0, 2.0, math.inf])
    assert (result.pvalue, result.z, result.hodges_lehmann) == (1.0, 0.0, 0.0)
    assert result.probability_of_superiority == 0.5
    assert not result.insufficient_data


def test_an_empty_arm_is_insufficient_data() -> None:
    result = mann_whitney_grouped([0, 0, 0], [1, 5, 0], [1.0, 2.0, math.inf])
    assert result.insufficient_data
    assert (result.pvalue, result.statistic, result.z) == (1.0, 0.0, 0.0)


def test_fractional_counts_from_increase_are_accepted() -> None:
    result = mann_whitney_grouped([10.5, 20.25, 3.0], [5.5, 20.0, 9.75], [1.0, 2.0, math.inf])
    assert 0.0 <= result.pvalue <= 1.0
    assert math.isfinite(result.z)


@pytest.mark.parametrize(
    ("stable", "candidate", "bounds"),
    [
        ([1, 2], [1, 2, 3], [1.0, 2.0]),
        ([1, 2], [1, 2], [1.0]),
        ([1, 2], [1, 2], [2.0, 1.0]),
        ([1, 2, 3], [1, 2, 3], [1.0, math.inf, math.inf]),
        ([1, -2], [1, 2], [1.0, 2.0]),
        ([1, math.nan], [1, 2], [1.0, 2.0]),
    ],
)
def test_malformed_histograms_are_refused(stable: list[float], candidate: list[float], bounds: list[float]) -> None:
    with pytest.raises(ValueError):
        mann_whitney_grouped(stable, candidate, bounds)


def test_representative_values_are_upper_bounds_with_inf_at_the_top_finite_bound() -> None:
    assert representative_values([0.1, 0.5, math.inf]).tolist() == [0.1, 0.5, 0.5]
    assert representative_values([math.inf]).tolist() == [0.0]


def _brute_force_hodges_lehmann(stable: npt.ArrayLike, candidate: npt.ArrayLike, values: npt.ArrayLike) -> float:
    points = np.asarray(values, dtype=np.float64)
    stable_observations = np.repeat(points, np.asarray(stable, dtype=np.int64))
    candidate_observations = np.repeat(points, np.asarray(candidate, dtype=np.int64))
    return float(np.median(np.subtract.outer(candidate_observations, stable_observations)))


@pytest.mark.parametrize(
    ("stable", "candidate"),
    [
        ([1, 1], [1, 1]),  # even number of pairs, the median splits between two differences
        ([2, 3, 0, 1], [0, 1, 4, 2]),
        ([5, 0, 0, 0], [0, 0, 0, 3]),
        ([0, 0, 3, 0], [1, 0, 0, 0]),
    ],
)
def test_hodges_lehmann_matches_brute_force_on_hand_picked_cases(stable: list[int], candidate: list[int]) -> None:
    values = [1.0, 2.0, 4.0, 8.0][: len(stable)]
    assert hodges_lehmann_grouped(stable, candidate, values) == _brute_force_hodges_lehmann(stable, candidate, values)


@settings(derandomize=True, max_examples=80)
@given(
    data=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=7).filter(
        lambda pairs: sum(s for s, _ in pairs) > 0 and sum(c for _, c in pairs) > 0
    ),
    step=st.floats(0.1, 10.0),
)
def test_hodges_lehmann_matches_brute_force(data: list[tuple[int, int]], step: float) -> None:
    stable = [s for s, _ in data]
    candidate = [c for _, c in data]
    values = np.cumsum(np.full(len(data), step)) ** 1.5
    grouped = hodges_lehmann_grouped(stable, candidate, values)
    assert grouped == pytest.approx(_brute_force_hodges_lehmann(stable, candidate, values), rel=1e-12, abs=1e-12)


def test_hodges_lehmann_needs_both_arms() -> None:
    with pytest.raises(ValueError):
        hodges_lehmann_grouped([0, 0], [1, 2], [1.0, 2.0])


@settings(derandomize=True, max_examples=60)
@given(
    data=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=1, max_size=12),
    alternative=st.sampled_from(["two-sided", "greater", "less"]),
)
def test_pvalues_are_probabilities(data: list[tuple[int, int]], alternative: Alternative) -> None:
    bounds = [*range(1, len(data)), math.inf]
    result = mann_whitney_grouped([s for s, _ in data], [c for _, c in data], bounds, alternative=alternative)
    assert 0.0 <= result.pvalue <= 1.0
    assert 0.0 <= result.probability_of_superiority <= 1.0
    assert all(math.isfinite(value) for value in (result.statistic, result.z, result.hodges_lehmann))


def test_counts_from_cumulative_handles_the_inf_bucket() -> None:
    # le = 0.1, 0.5, 1, +Inf: the +Inf bucket holds what lies above 1.
    assert counts_from_cumulative([2, 5, 5, 9]).tolist() == [2, 3, 0, 4]
    assert counts_from_cumulative([7]).tolist() == [7]


def test_counts_from_cumulative_repairs_extrapolation_dips_like_histogram_quantile() -> None:
    assert counts_from_cumulative([2.0, 5.5, 5.25, 9.0]).tolist() == [2.0, 3.5, 0.0, 3.5]


@pytest.mark.parametrize("cumulative", [[], [1, -1], [[1, 2]], [1, math.nan]])
def test_counts_from_cumulative_refuses_malformed_input(cumulative: list[float]) -> None:
    with pytest.raises(ValueError):
        counts_from_cumulative(cumulative)
