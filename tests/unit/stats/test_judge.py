"""Verdicts: every branch of the A/B, rank and drift judges."""

from __future__ import annotations

import math

import pytest

from controller.stats import (
    ABVerdict,
    JudgePolicy,
    SequentialResult,
    Verdict,
    judge_drift,
    judge_rank,
    judge_sequential,
    mann_whitney_grouped,
    two_proportion_test,
)
from controller.stats.results import Alternative

POLICY = JudgePolicy(alpha=0.05, minimum_detectable_effect=0.01, higher_is_better=True, min_samples=1000)


def _result(
    pvalue: float, low: float, high: float, *, samples: float = 5000, insufficient: bool = False
) -> SequentialResult:
    return SequentialResult(
        effect=(low + high) / 2,
        variance=1e-5,
        tau2=1e-4,
        alpha=0.05,
        stable_samples=samples,
        candidate_samples=samples + 10,
        statistic=-math.log(pvalue) if pvalue > 0 else 50.0,
        pvalue=pvalue,
        ci_low=low,
        ci_high=high,
        insufficient_data=insufficient,
    )


@pytest.mark.parametrize(
    ("result", "higher_is_better", "verdict"),
    [
        (_result(1.0, -1.0, 1.0, samples=0, insufficient=True), True, ABVerdict.NO_DATA),
        (_result(0.001, 0.02, 0.04, samples=500), True, ABVerdict.INCONCLUSIVE),
        (_result(0.001, 0.002, 0.03), True, ABVerdict.CANDIDATE_BETTER),
        (_result(0.001, 0.002, 0.03), False, ABVerdict.CANDIDATE_WORSE),
        (_result(0.001, -0.03, -0.002), True, ABVerdict.CANDIDATE_WORSE),
        (_result(0.001, -0.03, -0.002), False, ABVerdict.CANDIDATE_BETTER),
        (_result(0.6, -0.004, 0.006), True, ABVerdict.NO_DIFFERENCE),
        (_result(0.6, -0.004, 0.006), False, ABVerdict.NO_DIFFERENCE),
        (_result(0.3, -0.02, 0.03), True, ABVerdict.INCONCLUSIVE),
        # Reaching the mde exactly is not "within" it.
        (_result(0.6, -0.01, 0.005), True, ABVerdict.INCONCLUSIVE),
    ],
)
def test_judge_sequential(result: SequentialResult, higher_is_better: bool, verdict: ABVerdict) -> None:
    policy = JudgePolicy(
        alpha=0.05, minimum_detectable_effect=0.01, higher_is_better=higher_is_better, min_samples=1000
    )
    assert judge_sequential(result, policy) is verdict


def test_a_significant_pvalue_carried_forward_needs_an_interval_off_zero_too() -> None:
    assert judge_sequential(_result(0.01, -0.004, 0.006), POLICY) is ABVerdict.NO_DIFFERENCE
    assert judge_sequential(_result(0.01, -0.004, 0.03), POLICY) is ABVerdict.INCONCLUSIVE


def test_a_significant_but_negligible_effect_is_still_a_direction() -> None:
    assert judge_sequential(_result(0.01, 0.001, 0.004), POLICY) is ABVerdict.CANDIDATE_BETTER


def test_a_result_at_another_alpha_is_refused() -> None:
    with pytest.raises(ValueError):
        judge_sequential(_result(0.01, 0.001, 0.004), JudgePolicy(alpha=0.01))


def test_fixed_horizon_results_can_be_judged_too() -> None:
    result = two_proportion_test(
        stable_successes=500, stable_trials=10_000, candidate_successes=650, candidate_trials=10_000
    )
    assert judge_sequential(result, POLICY) is ABVerdict.CANDIDATE_BETTER
    empty = two_proportion_test(stable_successes=0, stable_trials=0, candidate_successes=0, candidate_trials=0)
    assert judge_sequential(empty, POLICY) is ABVerdict.NO_DATA


BOUNDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, math.inf]
STABLE = [100, 400, 300, 150, 40, 10, 0]
SLOWER = [40, 250, 350, 250, 80, 30, 0]
LATENCY = JudgePolicy(alpha=0.01, minimum_detectable_effect=0.0, higher_is_better=False, min_samples=500)


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_a_significantly_slower_candidate_fails(alternative: Alternative) -> None:
    result = mann_whitney_grouped(STABLE, SLOWER, BOUNDS, alternative=alternative)
    assert result.pvalue < 1e-6
    assert judge_rank(result, LATENCY) is Verdict.FAIL


def test_a_faster_or_similar_candidate_passes() -> None:
    faster = mann_whitney_grouped(SLOWER, STABLE, BOUNDS)
    assert faster.pvalue < 1e-6
    assert judge_rank(faster, LATENCY) is Verdict.PASS
    same = mann_whitney_grouped(STABLE, STABLE, BOUNDS)
    assert judge_rank(same, LATENCY) is Verdict.PASS


def test_a_slowdown_within_tolerance_passes() -> None:
    result = mann_whitney_grouped(STABLE, SLOWER, BOUNDS, alternative="greater")
    assert 0 < result.hodges_lehmann <= 0.025
    tolerant = JudgePolicy(alpha=0.01, minimum_detectable_effect=0.05, higher_is_better=False, min_samples=500)
    assert judge_rank(result, tolerant) is Verdict.PASS
    strict = JudgePolicy(alpha=0.01, minimum_detectable_effect=result.hodges_lehmann, higher_is_better=False)
    assert judge_rank(result, strict) is Verdict.FAIL


def test_when_higher_is_better_a_lower_candidate_fails() -> None:
    result = mann_whitney_grouped(SLOWER, STABLE, BOUNDS, alternative="less")
    assert judge_rank(result, JudgePolicy(alpha=0.01, higher_is_better=True)) is Verdict.FAIL


def test_rank_without_enough_data() -> None:
    small = mann_whitney_grouped([1, 2, 0], [0, 2, 3], [1.0, 2.0, math.inf])
    assert judge_rank(small, LATENCY) is Verdict.INCONCLUSIVE
    empty = mann_whitney_grouped([0, 0, 0], [0, 2, 3], [1.0, 2.0, math.inf])
    assert judge_rank(empty, LATENCY) is Verdict.NO_DATA


def test_a_test_that_cannot_show_the_bad_direction_is_refused() -> None:
    result = mann_whitney_grouped(STABLE, SLOWER, BOUNDS, alternative="less")
    with pytest.raises(ValueError):
        judge_rank(result, LATENCY)


def test_judge_drift() -> None:
    assert judge_drift(None, 0.2) is Verdict.NO_DATA
    assert judge_drift(math.nan, 0.2) is Verdict.NO_DATA
    assert judge_drift(0.1, 0.2) is Verdict.PASS
    assert judge_drift(0.2, 0.2) is Verdict.PASS
    assert judge_drift(0.3, 0.2) is Verdict.FAIL


def test_verdicts_are_lower_case_strings() -> None:
    assert Verdict.NO_DATA == "no_data"
    assert f"{ABVerdict.CANDIDATE_BETTER}" == "candidate_better"
    assert {verdict.value for verdict in Verdict} == {"pass", "fail", "inconclusive", "no_data"}


@pytest.mark.parametrize(
    "arguments",
    [
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"minimum_detectable_effect": -0.1},
        {"minimum_detectable_effect": math.inf},
        {"min_samples": -1},
    ],
)
def test_impossible_policies_are_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        JudgePolicy(**arguments)  # type: ignore[arg-type]
