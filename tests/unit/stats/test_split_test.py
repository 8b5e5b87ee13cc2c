"""The anytime-valid split test against known answers, and its guarantee by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, nchypergeom_fisher

from controller.stats import split_test


def test_the_increment_is_the_binomial_log_likelihood_ratio_of_the_tilted_share() -> None:
    test = split_test.mixture(0.0, 1, 0.5, 0.7)
    events, candidate, share = 37.0, 9.0, 0.1
    increment = split_test.log_ratio_increment(test, np.array([events]), np.array([candidate]), np.array([share]))[0]
    for log_ratio, value in zip(test.alternatives, increment, strict=True):
        tilted = share * math.exp(log_ratio) / (1 - share + share * math.exp(log_ratio))
        expected = binom.logpmf(candidate, events, tilted) - binom.logpmf(candidate, events, share)
        assert value == pytest.approx(expected, abs=1e-9)


def test_a_composite_null_tilts_from_its_own_ratio() -> None:
    test = split_test.mixture(math.log(1.5), 1, 0.5)
    increment = split_test.log_ratio_increment(test, np.array([20.0]), np.array([5.0]), np.array([0.2]))[0]
    null = 0.2 * 1.5 / (0.8 + 0.2 * 1.5)
    for log_ratio, value in zip(test.alternatives, increment, strict=True):
        tilted = 0.2 * math.exp(log_ratio) / (0.8 + 0.2 * math.exp(log_ratio))
        assert value == pytest.approx(binom.logpmf(5, 20, tilted) - binom.logpmf(5, 20, null), abs=1e-9)


def test_the_conditional_increment_is_fishers_noncentral_hypergeometric_log_likelihood_ratio() -> None:
    """Known answer: scipy's Fisher noncentral hypergeometric law, at random tables and a composite null."""
    rng = np.random.default_rng(4)
    test = split_test.mixture(0.2, -1, 0.3, 0.4)
    candidate_trials, stable_trials = rng.integers(0, 400, 60).astype(float), rng.integers(0, 400, 60).astype(float)
    candidate = rng.binomial(candidate_trials.astype(int), 0.45).astype(float)
    stable = rng.binomial(stable_trials.astype(int), 0.45).astype(float)
    increment, again = split_test.conditional_log_ratio_increments([test, test], stable, stable_trials, candidate,
                                                                   candidate_trials)
    assert np.array_equal(increment, again)

    def logpmf(log_odds: float | np.ndarray) -> np.ndarray:
        return np.asarray(nchypergeom_fisher.logpmf(
            candidate[:, None], (candidate_trials + stable_trials)[:, None], candidate_trials[:, None],
            (candidate + stable)[:, None], np.exp(log_odds)))

    expected = np.nan_to_num(logpmf(test.alternatives[None, :]) - logpmf(test.null))
    assert np.abs(increment - expected).max() < 1e-9


def test_the_conditional_increment_of_a_table_with_one_possible_split_is_zero_and_counts_are_whole() -> None:
    test = split_test.mixture(0.0, 1, 0.5)
    # No candidate trials; no events; every trial an event; then a fractional count from extrapolation.
    none, = split_test.conditional_log_ratio_increments(
        [test], np.array([3.0, 0.0, 10.0]), np.array([10.0, 10.0, 10.0]), np.array([0.0, 0.0, 5.0]),
        np.array([0.0, 10.0, 5.0]))
    assert np.all(none == 0.0)
    rounded, = split_test.conditional_log_ratio_increments([test], np.array([9.6]), np.array([20.2]),
                                                           np.array([4.8]), np.array([19.9]))
    whole, = split_test.conditional_log_ratio_increments([test], np.array([10.0]), np.array([20.0]), np.array([5.0]),
                                                         np.array([20.0]))
    assert np.array_equal(rounded, whole)


def test_the_large_sample_conditional_ratio_is_close_to_the_exact_one() -> None:
    """Cornfield's mean, integrated, against the exact normaliser on a table a plan would see."""
    test = split_test.mixture(0.0, 1, 0.2, 0.2)
    exact = split_test.conditional_log_ratio_increments([test], np.array([1900.0]), np.array([4000.0]),
                                                        np.array([2100.0]), np.array([4000.0]))[0][0]
    approximate = split_test.conditional_log_ratio_approximation(test, 2100.0, 4000.0, 4000.0, 4000.0)[0]
    assert np.abs(approximate - exact).max() < 0.01 * max(1.0, float(np.abs(exact).max()))
    mean, variance = split_test.conditional_moments(0.0, 4000.0, 4000.0, 4000.0)
    assert mean == pytest.approx(2000.0) and variance == pytest.approx(4000 * 0.25 * 0.5, rel=0.01)


def test_the_conditional_test_keeps_false_rejections_under_alpha_at_a_50_percent_base() -> None:
    """A/A at a 50% base, the split drifting: the exact conditional law keeps Ville's bound."""
    rng = np.random.default_rng(9)
    runs, alpha = 1000, 0.05
    test = split_test.mixture(0.0, 1, 0.1, 0.1)
    state, _ = split_test.start(runs)
    crossed = np.zeros(runs, dtype=bool)
    for look in range(200):
        share = 0.1 + 0.4 * math.sin(math.pi * look / 200) ** 2
        trials = rng.poisson(60, runs)
        candidate_trials = rng.binomial(trials, share)
        stable_trials = trials - candidate_trials
        state = split_test.accumulate(state, split_test.conditional_log_ratio_increments(
            [test], rng.binomial(stable_trials, 0.5).astype(float), stable_trials.astype(float),
            rng.binomial(candidate_trials, 0.5).astype(float), candidate_trials.astype(float))[0])
        crossed |= split_test.log_evidence(test, state) >= split_test.cumulative_log_threshold(alpha)
    assert crossed.mean() <= alpha
    assert crossed.mean() > 0.005, "and the bound is used: the test is not idle"


def test_the_mixture_weights_are_a_distribution_on_one_side_of_the_null() -> None:
    up, down = split_test.mixture(0.2, 1, 0.3, 0.7), split_test.mixture(0.2, -1, 0.3)
    for test in (up, down):
        assert float(np.exp(test.log_weights).sum()) == pytest.approx(1.0)
    assert (up.alternatives > 0.2).all() and (down.alternatives < 0.2).all()
    # Centred on 0.7 above the null: most of the weight lies between 0.1 and 1.5 above it.
    offsets = up.alternatives - 0.2
    assert float(np.exp(up.log_weights)[(offsets > 0.1) & (offsets < 1.5)].sum()) > 0.95


def test_no_events_and_impossible_sides_carry_no_evidence() -> None:
    test = split_test.mixture(0.0, 1, 0.5)
    none = split_test.log_ratio_increment(test, np.array([0.0, 3.0, 3.0]), np.array([0.0, 0.0, 3.0]),
                                          np.array([0.5, 0.0, 1.0]))
    assert np.all(none == 0.0), "no events; all on the only possible side (shares 0 and 1)"
    assert np.isfinite(none).all()


def test_the_detector_adds_one_only_at_a_restart() -> None:
    increment = np.log(np.full((1, split_test.OFFSETS.size), 2.0))
    _, empty = split_test.start(1)
    assert np.allclose(np.exp(split_test.detect(empty, increment, restart=True)), 2.0)  # (0 + 1) x 2
    assert np.allclose(np.exp(split_test.detect(np.log(np.full_like(increment, 3.0)), increment, False)), 6.0)
    assert np.allclose(np.exp(split_test.detect(np.log(np.full_like(increment, 3.0)), increment, True)), 8.0)


def test_the_detector_threshold_doubles_its_horizon_at_a_quarter_of_the_budget() -> None:
    base = split_test.detector_log_threshold(0.01, 1, 10)
    assert base == pytest.approx(math.log(2 * 10 / 0.01))
    assert split_test.detector_log_threshold(0.01, 10, 10) == pytest.approx(base)
    assert split_test.detector_log_threshold(0.01, 11, 10) == pytest.approx(base + math.log(4))
    assert split_test.detector_log_threshold(0.01, 40, 10) == pytest.approx(base + 2 * math.log(4))


def test_bad_designs_are_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        split_test.mixture(0.0, 0, 1.0)
    with pytest.raises(ValueError, match="scale"):
        split_test.mixture(0.0, 1, 0.0)


def test_ville_keeps_the_false_rejections_under_alpha_at_rare_events_and_a_shifting_split() -> None:
    """A/A: 2,000 runs of 300 looks, 0.5% events, the candidate's share of trials drifting from 2%
    to 60% and back: the crossing rate of the cumulative mixture stays under alpha."""
    rng = np.random.default_rng(8)
    runs, alpha = 2000, 0.05
    test = split_test.mixture(0.0, 1, 0.3, math.log(2))
    state, _ = split_test.start(runs)
    crossed = np.zeros(runs, dtype=bool)
    for look in range(300):
        share = 0.02 + 0.58 * math.sin(math.pi * look / 300) ** 2
        trials = rng.poisson(200, runs)
        candidate_trials = rng.binomial(trials, share)
        stable_events = rng.binomial(trials - candidate_trials, 0.005)
        candidate_events = rng.binomial(candidate_trials, 0.005)
        observed_share = np.divide(candidate_trials, trials, out=np.zeros(runs), where=trials > 0)
        state = split_test.accumulate(state, split_test.log_ratio_increment(
            test, (stable_events + candidate_events).astype(float), candidate_events.astype(float), observed_share))
        crossed |= split_test.log_evidence(test, state) >= split_test.cumulative_log_threshold(alpha)
    assert crossed.mean() <= alpha
