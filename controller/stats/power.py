"""Fixed-horizon sample sizes: what the sequential tests are measured against."""

from __future__ import annotations

import math

from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize


def check_probability(value: float, name: str) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, not {value!r}")
    return float(value)


def _samples_for_effect_size(effect_size: float, alpha: float, power: float, two_sided: bool,
                             ratio: float = 1.0) -> int:
    check_probability(alpha, "alpha")
    check_probability(power, "power")
    samples = NormalIndPower().solve_power(
        effect_size=abs(effect_size),
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative="two-sided" if two_sided else "larger",
    )
    return math.ceil(float(samples))


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
    effect_size = float(proportion_effectsize(baseline_rate + minimum_detectable_effect, baseline_rate))
    return _samples_for_effect_size(effect_size, alpha, power, two_sided, ratio)
