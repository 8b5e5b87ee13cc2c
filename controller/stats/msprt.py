"""Always-valid sequential test (mSPRT) of a normally distributed effect estimate, with a normal mixture prior.

Johari, Pekelis, Walsh, "Always Valid Inference" (2015) and Johari, Koomen, Pekelis, Walsh,
"Peeking at A/B Tests" (KDD 2017). The estimate theta_hat of candidate − stable is taken as
N(theta, V); the mixture of likelihood ratios over theta ~ N(0, tau2) against theta = 0 is

    Lambda = sqrt(V / (V + tau2)) * exp(theta_hat**2 * tau2 / (2 V (V + tau2))).

1 / Lambda is a p-value at every look at once: stop whenever it falls below alpha and the false
positive rate stays at most alpha however often one looks. V is estimated from the data (a plug-in),
so the guarantee is asymptotic, which the simulation tests check at rollout-sized samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from controller.stats.results import ConfidenceInterval, check_probability


@dataclass(frozen=True)
class SequentialResult:
    """One look of an mSPRT.

    `statistic` is log Lambda, `pvalue` the always-valid p-value, [ci_low, ci_high] the confidence sequence.
    """

    effect: float
    variance: float
    tau2: float
    alpha: float
    stable_samples: float
    candidate_samples: float
    statistic: float
    pvalue: float
    ci_low: float
    ci_high: float
    insufficient_data: bool = False

    @property
    def samples(self) -> float:
        """Samples in the smaller arm: the one that limits what the test can see."""
        return min(self.stable_samples, self.candidate_samples)

    def confidence_interval(self, confidence_level: float | None = None) -> ConfidenceInterval:
        """The stored interval (carried forward across looks), or this look's sequence at another level."""
        if confidence_level is None or self.insufficient_data:
            return ConfidenceInterval(self.ci_low, self.ci_high)
        alpha = 1.0 - check_probability(confidence_level, "confidence_level")
        half_width = confidence_sequence_half_width(self.variance, self.tau2, alpha)
        return ConfidenceInterval(self.effect - half_width, self.effect + half_width)


# Below this share of tau2 a variance is zero on the scale of the effects the mixture looks for;
# flooring it keeps log Lambda finite when both arms are constant.
RELATIVE_VARIANCE_FLOOR = 1e-12


def mixture_variance(minimum_detectable_effect: float) -> float:
    """tau2 = mde**2: the mixture puts its weight on effects of the size the rollout cares to detect."""
    if not math.isfinite(minimum_detectable_effect) or minimum_detectable_effect == 0:
        raise ValueError(f"minimum_detectable_effect must be finite and non-zero, not {minimum_detectable_effect!r}")
    return float(minimum_detectable_effect) ** 2


def log_likelihood_ratio(effect: float, variance: float, tau2: float) -> float:
    """log Lambda of the normal mixture, for a variance already floored above zero."""
    return -0.5 * math.log1p(tau2 / variance) + effect * effect * tau2 / (2.0 * variance * (variance + tau2))


def confidence_sequence_half_width(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the always-valid interval around the estimate.

    Invert the test of theta = theta0: keep theta0 while Lambda(theta0) < 1/alpha, that is while
        (theta_hat - theta0)**2 * tau2 / (2 V (V + tau2)) < log(1/alpha) + log((V + tau2) / V) / 2,
    so (theta_hat - theta0)**2 < V (V + tau2) / tau2 * (log((V + tau2) / V) + 2 log(1/alpha)).
    """
    return math.sqrt(variance * (variance + tau2) / tau2 * (math.log1p(tau2 / variance) - 2.0 * math.log(alpha)))


def _check_parameters(tau2: float, alpha: float) -> None:
    check_probability(alpha, "alpha")
    if not (math.isfinite(tau2) and tau2 > 0):
        raise ValueError(f"tau2 must be finite and positive, not {tau2!r}")


def normal_mixture_test(
    effect: float,
    variance: float,
    *,
    tau2: float,
    alpha: float = 0.05,
    stable_samples: float,
    candidate_samples: float,
) -> SequentialResult:
    """mSPRT of theta = 0 given an estimate of candidate − stable and the variance of that estimate."""
    _check_parameters(tau2, alpha)
    if not (math.isfinite(effect) and math.isfinite(variance) and variance >= 0):
        raise ValueError(f"effect and variance must be finite, variance non-negative: {effect!r}, {variance!r}")
    variance = max(float(variance), RELATIVE_VARIANCE_FLOOR * tau2)
    statistic = log_likelihood_ratio(effect, variance, tau2)
    pvalue = 1.0 if statistic <= 0 else math.exp(-statistic)
    half_width = confidence_sequence_half_width(variance, tau2, alpha)
    return SequentialResult(
        effect=float(effect),
        variance=variance,
        tau2=float(tau2),
        alpha=float(alpha),
        stable_samples=float(stable_samples),
        candidate_samples=float(candidate_samples),
        statistic=statistic,
        pvalue=pvalue,
        ci_low=effect - half_width,
        ci_high=effect + half_width,
    )


def no_data_result(
    *, tau2: float, alpha: float, stable_samples: float, candidate_samples: float, bound: float
) -> SequentialResult:
    """A look that cannot test anything yet: p = 1, and the interval is everything the effect could be."""
    _check_parameters(tau2, alpha)
    return SequentialResult(
        effect=0.0,
        variance=0.0,
        tau2=float(tau2),
        alpha=float(alpha),
        stable_samples=float(stable_samples),
        candidate_samples=float(candidate_samples),
        statistic=0.0,
        pvalue=1.0,
        ci_low=-bound,
        ci_high=bound,
        insufficient_data=True,
    )


def monotone_pvalue(previous: float | None, current: float) -> float:
    """The always-valid p-value after this look: it never rises, since earlier evidence stays valid."""
    return current if previous is None else min(previous, current)


def carry_forward(previous: SequentialResult | None, current: SequentialResult) -> SequentialResult:
    """Fold this look into the running test: the smallest p-value so far and the intersection of the sequences.

    A look without data keeps the previous result. Should the plug-in variance move so far that the
    intersection is empty, this look's sequence is kept: an empty interval would claim certainty.
    """
    if previous is None or previous.insufficient_data:
        return current
    if current.insufficient_data:
        return previous
    if not (math.isclose(previous.tau2, current.tau2) and math.isclose(previous.alpha, current.alpha)):
        raise ValueError("looks of one sequential test must share tau2 and alpha")
    low, high = max(previous.ci_low, current.ci_low), min(previous.ci_high, current.ci_high)
    if low > high:
        low, high = current.ci_low, current.ci_high
    return replace(current, pvalue=monotone_pvalue(previous.pvalue, current.pvalue), ci_low=low, ci_high=high)
