"""Drift measures: PSI by hand, KS against ks_2samp on expanded data, Jensen–Shannon against scipy."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from controller.stats import (
    PSI_EPSILON,
    histogram_drift,
    jensen_shannon_distance,
    ks_grouped,
    population_stability_index,
)


def _expand(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(counts, dtype=np.int64)
    return np.repeat(np.arange(array.size, dtype=np.float64), array)


def test_psi_by_hand() -> None:
    # Shares 0.5, 0.3, 0.2 against 0.4, 0.3, 0.3.
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + 0.0 + (0.3 - 0.2) * math.log(0.3 / 0.2)
    assert population_stability_index([50, 30, 20], [40, 30, 30]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.0628609, abs=1e-7)


def test_psi_floors_an_empty_bucket_at_epsilon() -> None:
    expected = (0.9 - 1.0) * math.log(0.9 / 1.0) + (0.1 - PSI_EPSILON) * math.log(0.1 / PSI_EPSILON)
    assert population_stability_index([100, 0], [90, 10]) == pytest.approx(expected, rel=1e-12)
    assert PSI_EPSILON == 1e-4


@pytest.mark.parametrize(("sizes", "method"), [((700, 450), "exact"), ((7000, 4500), "asymp")])
def test_ks_matches_scipy_on_the_expanded_data(sizes: tuple[int, int], method: str) -> None:
    rng = np.random.default_rng(5)
    stable = rng.multinomial(sizes[0], rng.dirichlet(np.ones(12)))
    candidate = rng.multinomial(sizes[1], stable / stable.sum())
    result = ks_grouped(stable, candidate)
    expected = stats.ks_2samp(_expand(candidate), _expand(stable), method=method)
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert result.pvalue == pytest.approx(float(expected.pvalue), rel=1e-9)
    assert result.effective_n == pytest.approx(sizes[0] * sizes[1] / sum(sizes))


@pytest.mark.parametrize("size", [3, 10, 40])
def test_ks_on_few_observations_rejects_no_more_often_than_its_level(size: int) -> None:
    # The asymptotic p-value fell under 0.001 in 7.4 % of A/A draws at about three observations an arm.
    rng = np.random.default_rng(size)
    shares = np.diff(np.concatenate([[0.0], stats.beta.cdf(np.arange(1, 20) * 0.05, 2.5, 5.8), [1.0]]))
    level, draws = 0.01, 4000
    rejected = sum(
        ks_grouped(rng.multinomial(rng.poisson(size) + 1, shares), rng.multinomial(rng.poisson(size) + 1, shares))
        .pvalue < level for _ in range(draws))
    assert rejected / draws <= level + 3 * math.sqrt(level * (1 - level) / draws)


def test_ks_sees_no_difference_between_proportional_histograms() -> None:
    result = ks_grouped([10, 20, 30], [20, 40, 60])
    assert result.statistic == pytest.approx(0.0, abs=1e-15)
    assert result.pvalue == pytest.approx(1.0)


def test_js_matches_scipy() -> None:
    stable, candidate = [50, 30, 20, 0], [40, 30, 25, 5]
    assert jensen_shannon_distance(stable, candidate) == pytest.approx(
        float(distance.jensenshannon(stable, candidate, base=2)), rel=1e-12
    )
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_histogram_drift_gathers_all_three() -> None:
    result = histogram_drift([50, 30, 20], [40, 30, 30])
    assert result.psi == population_stability_index([50, 30, 20], [40, 30, 30])
    assert result.jensen_shannon == jensen_shannon_distance([50, 30, 20], [40, 30, 30])
    assert result.ks_statistic == ks_grouped([50, 30, 20], [40, 30, 30]).statistic
    assert not result.insufficient_data


def test_an_empty_histogram_is_insufficient_data() -> None:
    result = histogram_drift([0, 0, 0], [1, 2, 3])
    assert result.insufficient_data
    assert (result.psi, result.jensen_shannon, result.ks_statistic, result.ks_pvalue) == (0.0, 0.0, 0.0, 1.0)
    assert ks_grouped([0, 0], [1, 2]).insufficient_data
    with pytest.raises(ValueError):
        population_stability_index([0, 0, 0], [1, 2, 3])
    with pytest.raises(ValueError):
        jensen_shannon_distance([1, 2, 3], [0, 0, 0])


def test_histograms_over_different_buckets_are_refused() -> None:
    with pytest.raises(ValueError):
        histogram_drift([1, 2], [1, 2, 3])


_histogram = st.lists(st.integers(0, 10_000), min_size=1, max_size=20).filter(lambda counts: sum(counts) > 0)


@settings(derandomize=True, max_examples=100)
@given(stable=_histogram, data=st.data())
def test_drift_measures_stay_in_range(stable: list[int], data: st.DataObject) -> None:
    candidate = data.draw(
        st.lists(st.integers(0, 10_000), min_size=len(stable), max_size=len(stable)).filter(lambda c: sum(c) > 0)
    )
    result = histogram_drift(stable, candidate)
    assert result.psi >= 0.0
    assert 0.0 <= result.jensen_shannon <= 1.0
    assert 0.0 <= result.ks_statistic <= 1.0 + 1e-12
    assert 0.0 <= result.ks_pvalue <= 1.0
    same = histogram_drift(stable, stable)
    assert same.psi == 0.0
    assert same.jensen_shannon == 0.0
    assert same.ks_statistic == 0.0
