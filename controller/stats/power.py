"""Fixed-horizon sample sizes: what the sequential tests are measured against.

The z-test on Cohen's h (Cohen, "Statistical Power Analysis for the Behavioral Sciences", 1988):
the arcsine-transformed difference has variance (1 + 1/ratio) / n1, so the power at n1 is
Phi(h sqrt(n1 / (1 + 1/ratio)) - z) plus, two-sided, the far tail. It is solved exactly as
statsmodels' NormalIndPower solves it (the tests compare the two), without statsmodels' weight
in the operator.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.stats import norm


def check_probability(value: float, name: str) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, not {value!r}")
    return float(value)


def _samples_for_effect_size(effect_size: float, alpha: float, power: float, two_sided: bool,
                             ratio: float = 1.0) -> int:
    check_probability(alpha, "alpha")
    check_probability(power, "power")
    h = abs(effect_size)
    if not (math.isfinite(h) and h > 0 and ratio > 0):
        raise ValueError(f"effect size and ratio must be positive: {effect_size!r}, {ratio!r}")
    critical = float(norm.isf(alpha / 2 if two_sided else alpha))

    def shortfall(n1: float) -> float:
        shift = h * math.sqrt(n1 / (1 + 1 / ratio))
        reached = float(norm.sf(critical - shift)) + (float(norm.cdf(-critical - shift)) if two_sided else 0.0)
        return reached - power

    high = 2.0
    while shortfall(high) < 0:
        high *= 2
    return math.ceil(float(brentq(shortfall, 1e-9, high, xtol=1e-10, rtol=1e-14)))


def samples_per_arm_for_proportions(
    baseline_rate: float,
    minimum_detectable_effect: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
    ratio: float = 1.0,
) -> int:
    """Samples in the first arm to detect baseline → baseline + mde (absolute), on Cohen's h, rounded up;
    the other arm has `ratio` times as many.

    This is the fixed-horizon figure; an always-valid test that may stop early needs more at the horizon.
    """
    check_probability(baseline_rate, "baseline_rate")
    check_probability(baseline_rate + minimum_detectable_effect, "baseline_rate + minimum_detectable_effect")
    if minimum_detectable_effect == 0:
        raise ValueError("minimum_detectable_effect must not be zero")
    effect_size = 2 * math.asin(math.sqrt(baseline_rate + minimum_detectable_effect)) - 2 * math.asin(
        math.sqrt(baseline_rate))
    return _samples_for_effect_size(effect_size, alpha, power, two_sided, ratio)
