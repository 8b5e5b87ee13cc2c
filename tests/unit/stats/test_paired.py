"""Betting tests on paired answers: valid at the null however often one looks, a function of the
counts alone, with confidence sequences that cover, and clear errors for bad counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.analysis import compare_tests
from controller.stats import paired

ALPHA = 0.05


def test_the_evidence_depends_on_the_counts_only_not_on_how_they_arrived() -> None:
    counts = np.array([[800.0, 100.0, 150.0, 5.0, 40.0, 5.0]])
    score = paired.disagreement_excess(0.2)
    once = paired.log_evidence(score, 0.02, counts)
    # Looked at every request or once at the end: the same e-value, so a restart loses nothing.
    assert once[0] == pytest.approx(paired.log_evidence(score, 0.02, counts * 1.0)[0])
    assert once[0] > math.log(1 / ALPHA), "10% disagreement against a deterministic stable: a breach"
    nothing = paired.log_evidence(score, 0.02, np.zeros((1, 6)))
    assert nothing[0] == pytest.approx(0.0), "no requests, no evidence"


def test_breaches_stay_under_alpha_at_the_null_with_continuous_looks() -> None:
    """A candidate exactly at the margin, looked at after every 5 requests for 2,000 requests."""
    rng = np.random.default_rng(7)
    runs, noise, excess, twice = 2000, 0.3, 0.02, 0.2
    changed = excess / (1 - noise)
    differs = changed + (1 - changed) * noise
    both = changed * noise + (1 - changed) * noise * noise  # every request equally noisy
    cells = np.array([(1 - twice) * (1 - differs), (1 - twice) * differs, twice * (1 - differs - noise + both),
                      twice * (noise - both), twice * (differs - both), twice * both])
    for test in (compare_tests.disagreement(ALPHA, twice, excess),):
        total, breached = np.zeros((runs, 6)), np.zeros(runs, dtype=bool)
        for _ in range(400):
            total += rng.multinomial(5, cells, size=runs)
            breached |= test.look(total).decided
        assert breached.mean() <= ALPHA


def test_an_early_pass_needs_the_excess_below_the_margin() -> None:
    test = compare_tests.no_worse(ALPHA, 0.2, 0.02)
    identical = np.array([[3200.0, 0.0, 800.0, 0.0, 0.0, 0.0]])  # 4,000 requests, nobody differs
    assert test.look(identical).decided[0]
    worse = np.array([[2880.0, 320.0, 720.0, 0.0, 80.0, 0.0]])  # the candidate differs on 10%
    assert not test.look(worse).decided[0]


def test_a_paired_sign_test_catches_a_slower_candidate_and_not_an_equal_one() -> None:
    test = compare_tests.paired_latency(ALPHA)
    assert test.look(np.array([[20.0, 60.0]])).decided[0], "slower on 75% of 80 requests"
    assert not test.look(np.array([[740.0, 260.0]])).decided[0], "equal arms: slower on 26% past the 1.2x factor"


def test_labelled_pairs_are_told_apart_by_their_discordant_cells_alone() -> None:
    """McNemar's design: both right or both wrong says nothing about which model is better."""
    worse, no_worse = compare_tests.accuracy_worse(ALPHA, 0.0), compare_tests.accuracy_no_worse(ALPHA, 0.01)
    concordant = np.array([[9000.0, 0.0, 0.0, 1000.0]])
    assert paired.log_evidence(paired.ACCURACY_GAIN.negated(), 0.0, concordant)[0] == pytest.approx(0.0)
    assert no_worse.look(concordant).decided[0], "10,000 agreeing pairs: no more than 1 point worse"
    assert worse.look(np.array([[900.0, 40.0, 10.0, 50.0]])).decided[0], "wrong on 40 the stable got, right on 10"
    assert not worse.look(np.array([[900.0, 25.0, 25.0, 50.0]])).decided[0]
    assert paired.STABLE_ACCURACY.mean([[900.0, 40.0, 10.0, 50.0]]) == pytest.approx(0.94)
    assert paired.CANDIDATE_ACCURACY.mean([[900.0, 40.0, 10.0, 50.0]]) == pytest.approx(0.91)


def test_a_judges_ties_are_no_observation_and_its_losses_against_the_margin_decide() -> None:
    worse = compare_tests.judged_worse(ALPHA, 0.05)
    assert not worse.look(np.array([[10.0, 10.0, 5000.0]])).decided[0], "ties say nothing"
    assert worse.look(np.array([[30.0, 90.0, 50.0]])).decided[0], "the stable preferred on 75% of decided pairs"
    assert not worse.look(np.array([[45.0, 55.0, 0.0]])).decided[0], "55% is within 1/2 + margin"
    assert compare_tests.judged_no_worse(ALPHA, 0.05).look(np.array([[500.0, 400.0, 0.0]])).decided[0]


def test_output_deltas_are_scored_by_their_buckets_lower_edge() -> None:
    edges = (0.01, 0.1, 1.0, math.inf)
    floors = paired.bucket_floors(edges)
    assert floors.values == (0.0, 0.01, 0.1, 1.0)
    test = compare_tests.output_delta(ALPHA, edges, 0.05)
    # Every delta in (0.1, 1]: the floor 0.1 is above the bound 0.05, and that is enough.
    assert test.look(np.array([[0.0, 0.0, 200.0, 0.0]])).decided[0]
    # Every delta in (0.01, 0.1]: a true mean up to 0.1, but the floor 0.01 cannot show it above 0.05.
    assert not test.look(np.array([[0.0, 500.0, 0.0, 0.0]])).decided[0]
    with pytest.raises(ValueError, match="rise and end at \\+Inf"):
        paired.bucket_floors((0.1, 0.01, math.inf))


def test_confidence_sequences_cover_the_rates_and_narrow() -> None:
    rng = np.random.default_rng(3)
    misses = 0
    for _ in range(200):
        n = rng.multinomial(2000, [0.72, 0.08, 0.17, 0.01, 0.015, 0.005])[None, :].astype(float)
        low, high = paired.confidence_sequence(paired.CANDIDATE_RATE, n, ALPHA)
        misses += not low <= 0.1 <= high
    assert misses / 200 <= ALPHA
    rates = compare_tests.rates(np.array([[720.0, 80.0, 170.0, 10.0, 15.0, 5.0]]), ALPHA)
    rate, (low, high) = rates["candidate"]
    assert rate == pytest.approx(0.1)
    assert low < 0.1 < high and high - low < 0.1
    noise, (low, high) = rates["stable"]
    assert noise == pytest.approx(15 / 200) and low < 15 / 200 < high
    assert paired.confidence_sequence(paired.CANDIDATE_RATE, np.zeros((1, 6)), ALPHA) == (0.0, 1.0)


def test_bad_counts_and_scores_are_refused_with_the_reason() -> None:
    score = paired.disagreement_excess(0.2)
    with pytest.raises(ValueError, match="one column per cell"):
        paired.log_evidence(score, 0.0, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="non-negative"):
        paired.log_evidence(score, 0.0, [[1.0, -2.0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="noise share"):
        paired.disagreement_excess(0.0)
    with pytest.raises(ValueError, match="finite values"):
        paired.Score((math.nan,))
    with pytest.raises(ValueError, match="alpha"):
        paired.log_threshold(1.0)


def test_a_biased_judge_is_corrected_toward_the_humans_by_prediction_powered_inference() -> None:
    """Humans split 50/50; the judge prefers the stable on 15% of the pairs humans gave the candidate.
    Its raw share excludes the truth; corrected by 200 human-judged pairs, the interval covers it."""
    rng = np.random.default_rng(3)
    human = rng.choice(["candidate", "stable"], size=20_000)
    judge = np.where((human == "candidate") & (rng.random(human.size) < 0.15), "stable", human)
    judged = np.array([[np.sum(judge[200:] == cell) for cell in paired.JUDGED_CELLS]], dtype=float)
    calibration = np.array([[np.sum((judge[:200] == j) & (human[:200] == h)) for j in paired.JUDGED_CELLS
                             for h in paired.JUDGED_CELLS]], dtype=float)
    raw = paired.confidence_sequence(paired.STABLE_SHARE, judged, ALPHA)
    lows, highs = paired.prediction_powered(judged, calibration, ALPHA)
    assert raw[0] > 0.5, raw
    assert lows[0] < 0.5 < highs[0] and highs[0] - lows[0] < 0.5, (lows, highs)
