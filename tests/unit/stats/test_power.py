"""Sample sizes against statsmodels and the textbook formulas."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from controller.stats import samples_per_arm_for_proportions


def test_a_one_percent_relative_lift_on_a_ten_percent_rate_needs_about_1_4_million_per_arm() -> None:
    samples = samples_per_arm_for_proportions(0.10, 0.001)
    exact = NormalIndPower().solve_power(
        effect_size=proportion_effectsize(0.101, 0.10), alpha=0.05, power=0.8, ratio=1.0, alternative="two-sided"
    )
    assert samples == math.ceil(exact) == 1_419_062
    # Kohavi, Tang & Xu, "Trustworthy Online Controlled Experiments": n ≈ 16 σ² / δ² per variant.
    rule_of_thumb = 16 * 0.10 * 0.90 / 0.001**2
    assert samples == pytest.approx(rule_of_thumb, rel=0.02)
    # The "~150,000 per variant" sometimes quoted for this case belongs to a lift about three times larger.
    assert samples_per_arm_for_proportions(0.10, 0.003) == pytest.approx(150_000, rel=0.07)


def test_proportions_follow_cohens_h_in_closed_form() -> None:
    h = 2 * math.asin(math.sqrt(0.11)) - 2 * math.asin(math.sqrt(0.10))
    # Per arm, the arcsine-transformed difference has variance 1/n + 1/n: n = 2 ((z_a + z_b) / h)**2.
    closed_form = 2 * ((norm.ppf(0.975) + norm.ppf(0.8)) / h) ** 2
    assert samples_per_arm_for_proportions(0.10, 0.01) == pytest.approx(closed_form, abs=1)
    assert samples_per_arm_for_proportions(0.10, 0.01) == 14_745


def test_one_sided_and_negative_effects() -> None:
    one_sided = samples_per_arm_for_proportions(0.10, 0.01, two_sided=False)
    h = 2 * math.asin(math.sqrt(0.11)) - 2 * math.asin(math.sqrt(0.10))
    assert one_sided == math.ceil(2 * ((norm.ppf(0.95) + norm.ppf(0.8)) / h) ** 2)
    # A drop to 9 % has less variance to see through than a rise to 11 %.
    down = NormalIndPower().solve_power(effect_size=proportion_effectsize(0.09, 0.10), alpha=0.05, power=0.8, ratio=1.0)
    assert samples_per_arm_for_proportions(0.10, -0.01) == math.ceil(down) == 13_488


@pytest.mark.parametrize(
    ("baseline", "effect", "alpha", "power"),
    [
        (0.0, 0.01, 0.05, 0.8),
        (0.995, 0.01, 0.05, 0.8),
        (0.1, 0.0, 0.05, 0.8),
        (0.1, 0.01, 0.0, 0.8),
        (0.1, 0.01, 0.05, 1.0),
    ],
)
def test_impossible_plans_are_refused(baseline: float, effect: float, alpha: float, power: float) -> None:
    with pytest.raises(ValueError):
        samples_per_arm_for_proportions(baseline, effect, alpha=alpha, power=power)


@pytest.mark.parametrize(("baseline", "effect", "two_sided", "ratio"), [
    (0.005, 0.005, False, 9.0), (0.10, 0.01, True, 1.0), (0.30, -0.02, True, 0.25), (0.5, 0.1, False, 3.0),
])
def test_unbalanced_and_one_sided_plans_match_statsmodels(baseline: float, effect: float, two_sided: bool,
                                                          ratio: float) -> None:
    expected = NormalIndPower().solve_power(
        effect_size=abs(float(proportion_effectsize(baseline + effect, baseline))), alpha=0.05, power=0.8,
        ratio=ratio, alternative="two-sided" if two_sided else "larger")
    assert samples_per_arm_for_proportions(baseline, effect, two_sided=two_sided, ratio=ratio) == math.ceil(expected)
