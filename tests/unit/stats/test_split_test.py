"""The anytime-valid split test against known answers, and its guarantee by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

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
