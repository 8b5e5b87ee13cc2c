"""Two-proportion tests of candidate − stable: a fixed-horizon test and an always-valid mSPRT."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

from controller.stats.msprt import SequentialResult, no_data_result, normal_mixture_test
from controller.stats.results import Alternative, ConfidenceInterval, check_alternative, check_probability

ProportionMethod = Literal["score", "wald"]

# "score" tests with the pooled variance at the null (the textbook two-proportion z-test) and bounds the
# difference with Newcombe's hybrid score interval: statsmodels' own score inversion fails at zero cells.
# "wald" uses the unpooled variance for both, so test and interval agree but degenerate at rates of 0 or 1.
# No n / (n - 1) small-sample factor (correction=False), so "score" is exactly the textbook test.
_INTERVAL_METHOD: dict[ProportionMethod, str] = {"score": "newcomb", "wald": "wald"}
_STATSMODELS_ALTERNATIVE: dict[Alternative, str] = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}

# Without a minimum detectable effect to derive it from, the mixture looks for one percentage point.
DEFAULT_PROPORTION_TAU2 = 0.01**2


@dataclass(frozen=True)
class ProportionTestResult:
    """Fixed-horizon test of candidate rate − stable rate."""

    stable_successes: float
    stable_trials: float
    candidate_successes: float
    candidate_trials: float
    method: ProportionMethod
    alternative: Alternative
    alpha: float
    difference: float
    statistic: float
    pvalue: float
    ci_low: float
    ci_high: float
    insufficient_data: bool = False

    @property
    def samples(self) -> float:
        return min(self.stable_trials, self.candidate_trials)

    def confidence_interval(self, confidence_level: float | None = None) -> ConfidenceInterval:
        """Interval for the difference, one-sided for a one-sided alternative (bounded by ±1 there)."""
        if confidence_level is None or self.insufficient_data:
            return ConfidenceInterval(self.ci_low, self.ci_high)
        alpha = 1.0 - check_probability(confidence_level, "confidence_level")
        return _difference_interval(
            self.stable_successes,
            self.stable_trials,
            self.candidate_successes,
            self.candidate_trials,
            self.method,
            self.alternative,
            alpha,
        )


def _check_arm(successes: float, trials: float, arm: str) -> None:
    if not (math.isfinite(successes) and math.isfinite(trials) and 0 <= successes <= trials):
        raise ValueError(f"{arm} needs 0 <= successes <= trials, finite: got {successes!r} of {trials!r}")


def _difference_interval(
    stable_successes: float,
    stable_trials: float,
    candidate_successes: float,
    candidate_trials: float,
    method: ProportionMethod,
    alternative: Alternative,
    alpha: float,
) -> ConfidenceInterval:
    # A one-sided bound at alpha is the matching end of the two-sided interval at 2 alpha.
    two_sided_alpha = alpha if alternative == "two-sided" else 2.0 * alpha
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = confint_proportions_2indep(
            candidate_successes,
            candidate_trials,
            stable_successes,
            stable_trials,
            method=_INTERVAL_METHOD[method],
            compare="diff",
            alpha=two_sided_alpha,
            correction=False,
        )
    low, high = max(float(low), -1.0), min(float(high), 1.0)
    if alternative == "greater":
        return ConfidenceInterval(low, 1.0)
    if alternative == "less":
        return ConfidenceInterval(-1.0, high)
    return ConfidenceInterval(low, high)


def two_proportion_test(
    *,
    stable_successes: float,
    stable_trials: float,
    candidate_successes: float,
    candidate_trials: float,
    method: ProportionMethod = "score",
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
) -> ProportionTestResult:
    """Fixed-horizon z-test of candidate − stable, wrapping statsmodels' `test_proportions_2indep`.

    Valid once, at a sample size fixed in advance: for repeated looks use `sequential_proportion_test`.
    """
    _check_arm(stable_successes, stable_trials, "stable")
    _check_arm(candidate_successes, candidate_trials, "candidate")
    alternative = check_alternative(alternative)
    check_probability(alpha, "alpha")
    if method not in _INTERVAL_METHOD:
        raise ValueError(f"method must be 'score' or 'wald', not {method!r}")
    if alternative != "two-sided" and alpha >= 0.5:
        raise ValueError("a one-sided interval needs alpha below 0.5")
    if stable_trials == 0 or candidate_trials == 0:
        difference, statistic, pvalue = 0.0, 0.0, 1.0
        low, high = -1.0, 1.0
    else:
        difference = candidate_successes / candidate_trials - stable_successes / stable_trials
        statistic, pvalue = _z_test(
            stable_successes, stable_trials, candidate_successes, candidate_trials, method, alternative
        )
        low, high = _difference_interval(
            stable_successes, stable_trials, candidate_successes, candidate_trials, method, alternative, alpha
        )
    return ProportionTestResult(
        stable_successes=float(stable_successes),
        stable_trials=float(stable_trials),
        candidate_successes=float(candidate_successes),
        candidate_trials=float(candidate_trials),
        method=method,
        alternative=alternative,
        alpha=float(alpha),
        difference=float(difference),
        statistic=statistic,
        pvalue=pvalue,
        ci_low=low,
        ci_high=high,
        insufficient_data=stable_trials == 0 or candidate_trials == 0,
    )


def _z_test(
    stable_successes: float,
    stable_trials: float,
    candidate_successes: float,
    candidate_trials: float,
    method: ProportionMethod,
    alternative: Alternative,
) -> tuple[float, float]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # statsmodels also computes ratio and odds ratio, which divide by zero at empty cells.
        warnings.simplefilter("ignore", RuntimeWarning)
        tested = test_proportions_2indep(
            candidate_successes,
            candidate_trials,
            stable_successes,
            stable_trials,
            method=method,
            compare="diff",
            alternative=_STATSMODELS_ALTERNATIVE[alternative],
            correction=False,
        )
    statistic, pvalue = float(tested.statistic), float(tested.pvalue)
    if math.isnan(statistic):
        # Both arms at the same rate of 0 or 1: no variance, and no evidence of a difference.
        return 0.0, 1.0
    return statistic, pvalue


def rate_variance(successes: float, trials: float) -> float:
    """Variance of an observed rate, p (1 − p) / n, with p kept half an event away from 0 and 1.

    A rate of exactly 0 or 1 has zero variance, which would make any difference infinitely
    significant; half an event is the floor, the usual allowance for an empty cell (Haldane–Anscombe).
    """
    half_event = 0.5 / trials
    rate = min(max(successes / trials, half_event), 1.0 - half_event)
    return rate * (1.0 - rate) / trials


def sequential_proportion_test(
    *,
    stable_successes: float,
    stable_trials: float,
    candidate_successes: float,
    candidate_trials: float,
    tau2: float = DEFAULT_PROPORTION_TAU2,
    alpha: float = 0.05,
) -> SequentialResult:
    """Always-valid mSPRT of candidate rate − stable rate, from cumulative counts at this look.

    The variance is unpooled, p_s (1 − p_s) / n_s + p_c (1 − p_c) / n_c, so that the same V serves
    the test of zero and the confidence sequence around any other difference. Pass
    `tau2=mixture_variance(minimum_detectable_effect)`; fold looks together with `carry_forward`.
    An arm with fewer than one trial (fractional counts come from `increase()`) gives no data.
    """
    _check_arm(stable_successes, stable_trials, "stable")
    _check_arm(candidate_successes, candidate_trials, "candidate")
    if stable_trials < 1 or candidate_trials < 1:
        return no_data_result(
            tau2=tau2, alpha=alpha, stable_samples=stable_trials, candidate_samples=candidate_trials, bound=1.0
        )
    effect = candidate_successes / candidate_trials - stable_successes / stable_trials
    variance = rate_variance(stable_successes, stable_trials) + rate_variance(candidate_successes, candidate_trials)
    return normal_mixture_test(
        effect,
        variance,
        tau2=tau2,
        alpha=alpha,
        stable_samples=stable_trials,
        candidate_samples=candidate_trials,
    )
