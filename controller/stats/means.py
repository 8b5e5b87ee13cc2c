"""Difference of two means from summary statistics: a fixed-horizon Welch t-test and an always-valid mSPRT."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from controller.stats.msprt import SequentialResult, no_data_result, normal_mixture_test
from controller.stats.results import Alternative, ConfidenceInterval, check_alternative, check_probability


@dataclass(frozen=True)
class WelchTestResult:
    """Fixed-horizon Welch t-test of candidate mean − stable mean."""

    stable_mean: float
    stable_variance: float
    stable_count: float
    candidate_mean: float
    candidate_variance: float
    candidate_count: float
    alternative: Alternative
    alpha: float
    difference: float
    statistic: float
    pvalue: float
    df: float
    ci_low: float
    ci_high: float
    insufficient_data: bool = False

    @property
    def samples(self) -> float:
        return min(self.stable_count, self.candidate_count)

    def confidence_interval(self, confidence_level: float | None = None) -> ConfidenceInterval:
        """Interval for the difference, one-sided (to ±inf) for a one-sided alternative, as scipy's."""
        if confidence_level is None or self.insufficient_data:
            return ConfidenceInterval(self.ci_low, self.ci_high)
        alpha = 1.0 - check_probability(confidence_level, "confidence_level")
        standard_error = math.sqrt(
            self.candidate_variance / self.candidate_count + self.stable_variance / self.stable_count
        )
        return _welch_interval(self.difference, standard_error, self.df, self.alternative, alpha)


def _check_arm(mean: float, variance: float, count: float, arm: str) -> None:
    if not (math.isfinite(mean) and math.isfinite(variance) and math.isfinite(count)) or variance < 0 or count < 0:
        raise ValueError(f"{arm} needs a finite mean, variance >= 0 and count >= 0: {mean!r}, {variance!r}, {count!r}")


def _welch_df(stable_variance: float, stable_count: float, candidate_variance: float, candidate_count: float) -> float:
    stable_part, candidate_part = stable_variance / stable_count, candidate_variance / candidate_count
    denominator = stable_part**2 / (stable_count - 1) + candidate_part**2 / (candidate_count - 1)
    if denominator == 0:
        return stable_count + candidate_count - 2
    return (stable_part + candidate_part) ** 2 / denominator


def _welch_interval(
    difference: float, standard_error: float, df: float, alternative: Alternative, alpha: float
) -> ConfidenceInterval:
    if alternative == "two-sided":
        margin = float(stats.t.ppf(1.0 - alpha / 2.0, df)) * standard_error
        return ConfidenceInterval(difference - margin, difference + margin)
    margin = float(stats.t.ppf(1.0 - alpha, df)) * standard_error
    if alternative == "greater":
        return ConfidenceInterval(difference - margin, math.inf)
    return ConfidenceInterval(-math.inf, difference + margin)


def welch_test(
    *,
    stable_mean: float,
    stable_variance: float,
    stable_count: float,
    candidate_mean: float,
    candidate_variance: float,
    candidate_count: float,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
) -> WelchTestResult:
    """Welch's t-test from summary statistics, wrapping `scipy.stats.ttest_ind_from_stats(equal_var=False)`.

    Variances are sample variances (ddof=1). Valid once, at a sample size fixed in advance.
    """
    _check_arm(stable_mean, stable_variance, stable_count, "stable")
    _check_arm(candidate_mean, candidate_variance, candidate_count, "candidate")
    alternative = check_alternative(alternative)
    check_probability(alpha, "alpha")
    difference = float(candidate_mean - stable_mean)
    insufficient = stable_count < 2 or candidate_count < 2
    if insufficient:
        statistic, pvalue, df = 0.0, 1.0, 0.0
        low, high = -math.inf, math.inf
    else:
        df = _welch_df(stable_variance, stable_count, candidate_variance, candidate_count)
        standard_error = math.sqrt(candidate_variance / candidate_count + stable_variance / stable_count)
        if standard_error == 0:
            # Both arms constant: the difference is known exactly.
            statistic = 0.0 if difference == 0 else math.copysign(math.inf, difference)
            pvalue = 1.0 if difference == 0 else _constant_pvalue(difference, alternative)
        else:
            tested = stats.ttest_ind_from_stats(
                candidate_mean,
                math.sqrt(candidate_variance),
                candidate_count,
                stable_mean,
                math.sqrt(stable_variance),
                stable_count,
                equal_var=False,
                alternative=alternative,
            )
            statistic, pvalue = float(tested.statistic), float(tested.pvalue)
        low, high = _welch_interval(difference, standard_error, df, alternative, alpha)
    return WelchTestResult(
        stable_mean=float(stable_mean),
        stable_variance=float(stable_variance),
        stable_count=float(stable_count),
        candidate_mean=float(candidate_mean),
        candidate_variance=float(candidate_variance),
        candidate_count=float(candidate_count),
        alternative=alternative,
        alpha=float(alpha),
        difference=difference,
        statistic=statistic,
        pvalue=pvalue,
        df=float(df),
        ci_low=low,
        ci_high=high,
        insufficient_data=insufficient,
    )


def _constant_pvalue(difference: float, alternative: Alternative) -> float:
    if alternative == "greater":
        return 0.0 if difference > 0 else 1.0
    if alternative == "less":
        return 0.0 if difference < 0 else 1.0
    return 0.0


def sequential_mean_test(
    *,
    stable_mean: float,
    stable_variance: float,
    stable_count: float,
    candidate_mean: float,
    candidate_variance: float,
    candidate_count: float,
    tau2: float,
    alpha: float = 0.05,
) -> SequentialResult:
    """Always-valid mSPRT of candidate mean − stable mean, from cumulative summary statistics at this look.

    V = s_c**2 / n_c + s_s**2 / n_s. tau2 has no scale-free default for means: pass
    `mixture_variance(minimum_detectable_effect)` in the metric's unit. Fewer than two samples in an
    arm (no variance yet) gives no data, with an interval of (-inf, inf).
    """
    _check_arm(stable_mean, stable_variance, stable_count, "stable")
    _check_arm(candidate_mean, candidate_variance, candidate_count, "candidate")
    if stable_count < 2 or candidate_count < 2:
        return no_data_result(
            tau2=tau2, alpha=alpha, stable_samples=stable_count, candidate_samples=candidate_count, bound=math.inf
        )
    return normal_mixture_test(
        candidate_mean - stable_mean,
        candidate_variance / candidate_count + stable_variance / stable_count,
        tau2=tau2,
        alpha=alpha,
        stable_samples=stable_count,
        candidate_samples=candidate_count,
    )
