"""Fixed-horizon sample sizes for the planning of a rollout, and how far the observed samples have come."""

from __future__ import annotations

import math

from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from controller.stats.results import check_probability


def _samples_for_effect_size(effect_size: float, alpha: float, power: float, two_sided: bool) -> int:
    check_probability(alpha, "alpha")
    check_probability(power, "power")
    samples = NormalIndPower().solve_power(
        effect_size=abs(effect_size),
        alpha=alpha,
        power=power,
        ratio=1.0,
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
) -> int:
    """Samples per arm to detect baseline → baseline + mde (absolute), on Cohen's h, rounded up.

    This is the fixed-horizon figure; an always-valid test that may stop early needs more at the horizon.
    """
    check_probability(baseline_rate, "baseline_rate")
    check_probability(baseline_rate + minimum_detectable_effect, "baseline_rate + minimum_detectable_effect")
    if minimum_detectable_effect == 0:
        raise ValueError("minimum_detectable_effect must not be zero")
    effect_size = float(proportion_effectsize(baseline_rate + minimum_detectable_effect, baseline_rate))
    return _samples_for_effect_size(effect_size, alpha, power, two_sided)


def samples_per_arm_for_means(
    std: float,
    minimum_detectable_effect: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
) -> int:
    """Samples per arm to detect a shift of mde in a mean whose per-observation standard deviation is std."""
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be finite and positive, not {std!r}")
    if not math.isfinite(minimum_detectable_effect) or minimum_detectable_effect == 0:
        raise ValueError("minimum_detectable_effect must be finite and non-zero")
    return _samples_for_effect_size(minimum_detectable_effect / std, alpha, power, two_sided)


def progress(observed: float, required: float) -> float:
    """Share of the required samples observed so far, capped at 1."""
    if not (math.isfinite(required) and required > 0):
        raise ValueError(f"required must be finite and positive, not {required!r}")
    return min(max(observed, 0.0) / required, 1.0)
