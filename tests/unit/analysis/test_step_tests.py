"""The per-look tests on the audit's failing cases, by simulation through the operator's own functions.

Each case below was reproduced by the audit of the old statistics (normal-approximation mSPRT,
windowed p99 ratio, chi-square SRM at every look). Seeds are fixed: the figures are deterministic.
The full matrix is `python -m benchmarks.decision_quality --stress`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from controller.analysis import step_tests
from controller.analysis.budget import AlphaBudget
from controller.stats import split_test

ALPHA = 0.05


def _intervals(rng: np.random.Generator, runs: int, requests: float, split: float, stable_rate: float,
               candidate_rate: float) -> step_tests.Interval:
    total = rng.poisson(requests, runs)
    candidate = rng.binomial(total, split)
    return step_tests.Interval(rng.binomial(total - candidate, stable_rate).astype(float),
                               (total - candidate).astype(float),
                               rng.binomial(candidate, candidate_rate).astype(float), candidate.astype(float))


def _false_rollbacks(split: float, rate: float, looks: int = 360, runs: int = 1000, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    test = step_tests.guardrail_test(AlphaBudget(ALPHA), 1.0, 10, looks * 10)
    state = step_tests.GuardrailState.start(runs)
    breached = np.zeros(runs, dtype=bool)
    for _ in range(looks):
        look = step_tests.guardrail_look(test, state, _intervals(rng, runs, 200, split, rate, rate))
        state, breached = look.state, breached | look.breached
    return float(breached.mean())


@pytest.mark.parametrize("split", [0.9, 0.95])
def test_an_aa_canary_at_90_to_95_percent_is_not_rolled_back_on_errors(split: float) -> None:
    """The audit: 10-12% false rollbacks through the error-rate guardrail at these weights."""
    assert _false_rollbacks(split, 0.005) <= ALPHA


def test_an_aa_ab_test_at_a_5_percent_split_and_rare_events_ends_falsely_at_most_alpha() -> None:
    """The audit: ~15% false verdicts, mostly a false CandidateBetter (which promotes)."""
    rng = np.random.default_rng(2)
    runs = 1000
    design = step_tests.design_at(ALPHA, 0.005, "absolute", False, 0.005)
    state = step_tests.ABState.start(runs)
    verdict = np.zeros(runs, dtype=np.int64)
    for _ in range(500):
        look = step_tests.ab_look(design, state, _intervals(rng, runs, 200, 0.05, 0.005, 0.005))
        state = look.state
        verdict = np.where(verdict == step_tests.NONE, look.verdict, verdict)
    assert np.isin(verdict, [step_tests.BETTER, step_tests.WORSE]).mean() <= ALPHA


def test_an_aa_latency_guardrail_with_heavy_tails_rolls_back_at_most_alpha() -> None:
    """The audit: 98% of A/A canaries (20 req/s, 10%, lognormal sigma 0.5) rolled back by a p99 ratio."""
    rng = np.random.default_rng(3)
    runs, sigma, median = 1000, 1.0, 0.05
    buckets = [0.005 * 1.2**i for i in range(33)]
    tail = norm.sf((np.log(buckets) - math.log(median)) / sigma)
    stable_cumulative = [*(600 * 18 * (1 - tail)).tolist(), 600 * 18.0]
    bounds = step_tests.slow_thresholds([*buckets, math.inf], stable_cumulative, 0.99, 1.2)
    assert bounds is not None and bounds[1] / bounds[0] == pytest.approx(1.2, rel=0.01)
    stable_slow, candidate_slow = (float(norm.sf((math.log(b) - math.log(median)) / sigma)) for b in bounds)
    test = step_tests.guardrail_test(AlphaBudget(ALPHA), 1.0, 10, 3600)
    state = step_tests.GuardrailState.start(runs)
    breached = np.zeros(runs, dtype=bool)
    for _ in range(360):
        total = rng.poisson(200, runs)
        candidate = rng.binomial(total, 0.1)
        interval = step_tests.Interval(rng.binomial(total - candidate, stable_slow).astype(float),
                                       (total - candidate).astype(float),
                                       rng.binomial(candidate, candidate_slow).astype(float), candidate.astype(float))
        look = step_tests.guardrail_look(test, state, interval)
        state, breached = look.state, breached | look.breached
    assert breached.mean() <= ALPHA


def test_a_regression_after_a_long_quiet_period_is_caught_by_the_change_detector() -> None:
    """The audit: a regression 24 h into a step took ~24x longer to catch than one at its start."""
    rng = np.random.default_rng(4)
    runs, quiet = 200, 2000
    test = step_tests.guardrail_test(AlphaBudget(ALPHA), 1.0, 10, None)
    state = step_tests.GuardrailState.start(runs)
    caught = np.zeros(runs, dtype=np.int64)
    for look in range(quiet + 600):
        rate = 0.02 if look >= quiet else 0.005
        result = step_tests.guardrail_look(test, state, _intervals(rng, runs, 200, 0.1, 0.005, rate))
        state = result.state
        caught = np.where((caught == 0) & result.breached, look + 1, caught)
    assert ((caught > 0) & (caught <= quiet)).mean() <= ALPHA, "false rollbacks during the quiet period"
    after = caught[caught > quiet] - quiet
    assert len(after) >= 0.9 * runs and np.median(after) <= 120, "a 4x regression, caught within 20 minutes"


def test_the_sample_ratio_check_halts_on_a_real_mismatch() -> None:
    rng = np.random.default_rng(5)
    runs = 500
    test = step_tests.SampleRatioTest(0.5)
    skewed, tests = np.zeros(runs, dtype=bool), step_tests.start_sample_ratio(runs)
    for _ in range(60):
        total = rng.poisson(1000, runs)
        candidate = rng.binomial(total, 0.47)
        result = step_tests.sample_ratio_look(test, tests, (total - candidate).astype(float), candidate.astype(float))
        tests, skewed = result.tests, skewed | result.mismatch
    assert skewed.mean() > 0.9, "a 53/47 split at 50/50 halts within ten minutes"
    assert result.evidence.shape == (runs,)


def test_an_ab_test_at_a_50_percent_base_decides_within_1_3_times_the_fixed_horizon() -> None:
    """The audit: the binomial split needed a median 2.56x the two-sided fixed n at a 50% base. On the
    exact conditional law (Fisher's noncentral hypergeometric) the median is under 1.3x."""
    rng = np.random.default_rng(12)
    runs, per_look = 150, 250
    design = step_tests.design_at(ALPHA, 0.04, "absolute", True, 0.5)
    fixed = step_tests.plan(design, 0.5).fixed_horizon
    assert design.conditional and fixed is not None
    state, decided = step_tests.ABState.start(runs), np.full(runs, np.inf)
    for look in range(1, 3 * fixed // per_look):
        trials = np.full(runs, float(per_look))
        result = step_tests.ab_look(design, state, step_tests.Interval(
            rng.binomial(per_look, 0.5, runs).astype(float), trials,
            rng.binomial(per_look, 0.54, runs).astype(float), trials))
        state = result.state
        decided = np.where(np.isinf(decided) & (result.verdict == step_tests.BETTER), look * per_look, decided)
    assert float(np.median(decided)) <= 1.3 * fixed


def test_the_ab_design_counts_the_rarer_outcome_and_reads_the_mde_as_asked() -> None:
    success = step_tests.ab_design(ALPHA, 0.005, "absolute", True, 99_000, 100_000)
    assert success.counted == "failures" and success.better == -1
    # 1% failures; +-0.5 points of success is a failure ratio of 1.5 or 0.5.
    assert success.high == pytest.approx(math.log(1.5), rel=0.05)
    assert success.low == pytest.approx(math.log(0.5), rel=0.05)
    conversion = step_tests.ab_design(ALPHA, 0.1, "relative", True, 100, 1000)
    assert conversion.counted == "successes" and conversion.better == 1
    assert conversion.high == pytest.approx(math.log(1.1), rel=0.01)
    empty = step_tests.ab_design(ALPHA, 0.01, "absolute", True, 0, 0)
    assert math.isfinite(empty.high) and math.isfinite(empty.low)


def test_slow_bounds_need_enough_of_the_tail_and_a_bound_within_reach_of_the_ratio() -> None:
    bounds = [0.1, 0.2, 0.3, math.inf]
    assert step_tests.slow_thresholds(bounds, [90, 99, 100, 100], 0.99, 1.2) is None, "100 requests: too few"
    assert step_tests.slow_thresholds(bounds, [900, 990, 1000, 1000], 0.99, 1.2) == (0.2, 0.3)
    with pytest.raises(step_tests.Unresolvable, match=r"its bound is 0.2 and the next bound is 0.3 \(1.5x\); "
                                                      r"add a bucket at 0.4"):
        step_tests.slow_thresholds(bounds, [900, 990, 1000, 1000], 0.99, 2.0)


GO_DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf]


def test_a_ratio_the_buckets_cannot_express_is_refused_before_any_request() -> None:
    """Prometheus' default buckets are 2-2.5x apart: a 1.2x guardrail on them used to test 2x, and passed
    a candidate twice as slow on every request. Refused at the first look, with what would resolve it."""
    empty = [0.0] * len(GO_DEFAULT_BUCKETS)
    with pytest.raises(step_tests.Unresolvable, match=r"closest are 2x.*at least 2"):
        step_tests.slow_thresholds(GO_DEFAULT_BUCKETS, empty, 0.99, 1.2)
    assert step_tests.slow_thresholds(GO_DEFAULT_BUCKETS, empty, 0.99, 1.0) is None, "1x: any buckets, once counted"
    with pytest.raises(step_tests.Unresolvable, match=r"no bucket but \+Inf"):
        step_tests.slow_thresholds([math.inf], [1000.0], 0.99, 1.0)


def test_a_stable_with_no_slow_request_gets_a_bound_and_a_tail_past_the_top_bound_is_refused() -> None:
    bounds = [0.1, 0.2, 0.3, math.inf]
    assert step_tests.slow_thresholds(bounds, [1000, 1000, 1000, 1000], 0.99, 1.0) == (0.1, 0.1)
    with pytest.raises(step_tests.Unresolvable, match=r"its bound is 0\.12 and no bound is above it"):
        step_tests.slow_thresholds([0.1, 0.12, math.inf], [0, 995, 1000], 0.99, 1.2)


def test_the_plan_orders_its_figures() -> None:
    plan = step_tests.plan(step_tests.ab_design(ALPHA, 0.01, "absolute", True, 100, 1000), 0.5)
    assert plan.fixed_horizon is not None and plan.fixed_horizon < plan.sequential_median < plan.sequential_p80
    unbalanced = step_tests.plan(step_tests.ab_design(ALPHA, 0.01, "absolute", True, 100, 1000), 0.1)
    assert unbalanced.fixed_horizon is not None and unbalanced.fixed_horizon < plan.fixed_horizon, \
        "the smaller arm of a 10/90 split needs fewer than each arm of a 50/50 one"


def test_a_short_history_in_one_bucket_picks_its_upper_bound() -> None:
    """200 stable requests, all between 50 and 75 ms (a stable seconds old): the bound is 75 ms, which
    none exceeded, not 50 ms, which 97% exceeded and against which a slower candidate shows nothing."""
    bounds = [0.025, 0.05, 0.075, 0.1, 0.15, math.inf]
    assert step_tests.slow_thresholds(bounds, [0, 6, 200, 200, 200, 200], 0.99, 1.2) == (0.075, 0.1)


def test_the_sample_ratio_is_tested_against_the_spans_each_arm_covers() -> None:
    """One arm's counts hold two scrapes (60 s), the other's one (30 s): at a 50/50 split that is
    2:1 in requests and no mismatch; tested against the weight alone it would halt at once."""
    test = step_tests.SampleRatioTest(0.5)
    stable, candidate = np.array([600.0]), np.array([1200.0])
    spans = (np.array([30.0]), np.array([60.0]))
    timed = step_tests.sample_ratio_look(test, step_tests.start_sample_ratio(1), stable, candidate, spans)
    untimed = step_tests.sample_ratio_look(test, step_tests.start_sample_ratio(1), stable, candidate)
    assert not timed.mismatch[0] and float(timed.evidence[0]) < 1.0
    assert untimed.mismatch[0]


def test_censoring_never_raises_an_intervals_evidence() -> None:
    """Valid whatever the cap: a censored interval's ratio is at most the uncensored one, for every alternative."""
    rng = np.random.default_rng(5)
    runs = 2000
    test = step_tests.guardrail_test(AlphaBudget(ALPHA), 1.2, 10, 3600)
    state = step_tests.GuardrailState(*split_test.start(runs), 0, 0, rng.poisson(50, runs).astype(float),
                                      rng.poisson(10_000, runs).astype(float))
    interval = _intervals(rng, runs, float(rng.integers(1, 500)), 0.3, 0.01, float(rng.uniform(0.005, 0.5)))
    censored = step_tests.censor(test, state, interval)
    assert (censored.candidate_events <= interval.candidate_events).all()
    assert (censored.candidate_events < interval.candidate_events).any(), "some interval is capped"

    def ratios(counted: step_tests.Interval) -> step_tests.FloatArray:
        return split_test.log_ratio_increment(
            test.mixture, counted.stable_events + counted.candidate_events, counted.candidate_events, interval.share)

    assert (ratios(censored) <= ratios(interval) + 1e-12).all()


def test_a_candidate_pods_burst_weighs_as_one_bad_interval_and_a_steady_regression_is_not_capped() -> None:
    test = step_tests.guardrail_test(AlphaBudget(ALPHA), 1.0, 10, 3600)
    # An hour of a stable at 0.5%; an interval where the candidate's 20 requests hold 8 errors.
    state = step_tests.GuardrailState(*split_test.start(1), 360, 12, np.array([324.0]),
                                      np.array([64_800.0]))
    burst = step_tests.censor(test, state, step_tests.Interval.of(1, 180, 8, 20))
    assert float(burst.candidate_events[0]) == 1.0
    # A 2x regression at 200 candidate requests an interval: 2 errors expected, 2-4 common.
    steady = step_tests.censor(test, state, step_tests.Interval.of(9, 1800, 4, 200))
    assert float(steady.candidate_events[0]) == 4.0


def test_no_interval_raises_a_guardrails_evidence_by_more_than_its_cap() -> None:
    """A burst of 40 slow requests in one long interval (a pod's episode, S = 60 s): the evidence rises
    by at most INTERVAL_LOG_CAP however large the burst, and a steady regression still crosses."""
    test = step_tests.guardrail_test(AlphaBudget(ALPHA), 1.0, 60, 3600)
    state = step_tests.GuardrailState.start(1)
    for _ in range(10):
        state = step_tests.guardrail_look(test, state, step_tests.Interval.of(6, 1080, 1, 120)).state
    before = float(split_test.log_evidence(test.mixture, state.cumulative)[0])
    burst = step_tests.guardrail_look(test, state, step_tests.Interval.of(6, 1080, 40, 120))
    assert float(burst.evidence[0]) <= before + step_tests.INTERVAL_LOG_CAP + 1e-9
    assert not burst.breached[0]
    steady, looks = step_tests.GuardrailState.start(1), 0
    while looks < 60:
        result = step_tests.guardrail_look(test, steady, step_tests.Interval.of(6, 1080, 3, 120))
        steady, looks = result.state, looks + 1
        if result.breached[0]:
            break
    assert result.breached[0] and looks >= 2, "a 5x regression crosses, over at least two intervals"


def test_the_censoring_cap_is_scipys_poisson_quantile() -> None:
    from scipy.stats import poisson

    rng = np.random.default_rng(3)
    means = np.concatenate([[0.0, 1e-9, 1e-3, 0.5, 1.0, 2.5, 1e4, 1e6], rng.exponential(50, 2000),
                            rng.uniform(0, 3, 2000)])
    for q in (0.5, 0.9, 0.999, 1 - step_tests.CENSOR_TAIL):
        assert np.array_equal(step_tests.poisson_quantile(q, means), poisson.ppf(q, means)), q
