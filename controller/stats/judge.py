"""Verdicts from test results: the decision kept apart from the statistics, as in Kayenta."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from controller.stats.ranks import RankTestResult
from controller.stats.results import ConfidenceInterval, check_probability


class Verdict(StrEnum):
    """Outcome of a check that guards a rollout."""

    PASS = "pass"  # noqa: S105 -- a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no_data"


class ABVerdict(StrEnum):
    """Outcome of an A/B comparison of candidate against stable."""

    CANDIDATE_BETTER = "candidate_better"
    CANDIDATE_WORSE = "candidate_worse"
    NO_DIFFERENCE = "no_difference"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class JudgePolicy:
    """What counts as a decision: significance level, the smallest effect that matters, its good direction.

    `minimum_detectable_effect` is in the unit of the judged effect (a difference of rates or means,
    or for a rank test the Hodges–Lehmann shift in bucket units); `min_samples` is per arm.
    """

    alpha: float = 0.05
    minimum_detectable_effect: float = 0.0
    higher_is_better: bool = True
    min_samples: float = 0.0

    def __post_init__(self) -> None:
        check_probability(self.alpha, "alpha")
        if not (math.isfinite(self.minimum_detectable_effect) and self.minimum_detectable_effect >= 0):
            raise ValueError("minimum_detectable_effect must be finite and non-negative")
        if not self.min_samples >= 0:
            raise ValueError("min_samples must be non-negative")


class EffectResult(Protocol):
    """What an A/B judgement reads: `SequentialResult`, and the fixed-horizon results too."""

    @property
    def alpha(self) -> float: ...

    @property
    def pvalue(self) -> float: ...

    @property
    def insufficient_data(self) -> bool: ...

    @property
    def samples(self) -> float: ...

    def confidence_interval(self, confidence_level: float | None = None) -> ConfidenceInterval: ...


def judge_sequential(result: EffectResult, policy: JudgePolicy) -> ABVerdict:
    """A/B verdict of a result under a policy.

    Better or worse once significant with the whole interval on one side of zero; no difference
    once the interval lies inside ±mde; otherwise inconclusive: keep collecting.
    """
    if not math.isclose(result.alpha, policy.alpha):
        # The interval was built at the result's level; judging it at another would misstate its coverage.
        raise ValueError(f"result computed at alpha={result.alpha} judged at alpha={policy.alpha}")
    if result.insufficient_data or result.samples <= 0:
        return ABVerdict.NO_DATA
    if result.samples < policy.min_samples:
        return ABVerdict.INCONCLUSIVE
    low, high = result.confidence_interval()
    if result.pvalue <= policy.alpha and (low > 0 or high < 0):
        candidate_higher = low > 0
        return ABVerdict.CANDIDATE_BETTER if candidate_higher == policy.higher_is_better else ABVerdict.CANDIDATE_WORSE
    mde = policy.minimum_detectable_effect
    if -mde < low and high < mde:
        return ABVerdict.NO_DIFFERENCE
    return ABVerdict.INCONCLUSIVE


def judge_rank(result: RankTestResult, policy: JudgePolicy) -> Verdict:
    """Guard verdict of a rank test: may the candidate's distribution go on?

    FAIL when the candidate is significantly worse (for latency: slower, with `higher_is_better=False`)
    by a Hodges–Lehmann shift of at least the policy's mde; PASS otherwise, once there are enough samples.
    """
    bad_direction = "less" if policy.higher_is_better else "greater"
    if result.alternative not in ("two-sided", bad_direction):
        raise ValueError(f"a {result.alternative!r} test cannot show the candidate worse; test {bad_direction!r}")
    if result.insufficient_data or result.samples <= 0:
        return Verdict.NO_DATA
    if result.samples < policy.min_samples:
        return Verdict.INCONCLUSIVE
    shift = -result.hodges_lehmann if policy.higher_is_better else result.hodges_lehmann
    worse = result.z < 0 if policy.higher_is_better else result.z > 0
    if result.pvalue <= policy.alpha and worse and shift >= policy.minimum_detectable_effect:
        return Verdict.FAIL
    return Verdict.PASS


def judge_drift(value: float | None, threshold: float) -> Verdict:
    """FAIL when a drift measure (PSI, JS distance, KS statistic) exceeds its threshold; NO_DATA without one."""
    if value is None or math.isnan(value):
        return Verdict.NO_DATA
    return Verdict.FAIL if value > threshold else Verdict.PASS
