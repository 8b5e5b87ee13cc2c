"""The normal-mixture mSPRT: likelihood ratio, confidence sequence, and folding looks together."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import norm

from controller.stats import (
    carry_forward,
    confidence_sequence_half_width,
    mixture_variance,
    monotone_pvalue,
    normal_mixture_test,
)
from controller.stats.msprt import log_likelihood_ratio, no_data_result


def _mixture_ratio_by_integration(effect: float, variance: float, tau2: float) -> float:
    """The definition: the likelihood under theta ~ N(0, tau2), averaged, over the likelihood at theta = 0."""
    sd, prior_sd = math.sqrt(variance), math.sqrt(tau2)
    posterior_mean = effect * tau2 / (variance + tau2)
    numerator, _ = integrate.quad(
        lambda theta: norm.pdf(effect, theta, sd) * norm.pdf(theta, 0.0, prior_sd),
        -1.0,
        1.0,
        points=[posterior_mean],
        epsabs=0.0,
        epsrel=1e-11,
        limit=200,
    )
    return float(numerator / norm.pdf(effect, 0.0, sd))


@pytest.mark.parametrize(
    ("effect", "variance", "tau2"),
    [(0.01, 1e-5, 1e-4), (-0.004, 2e-6, 1e-4), (0.0, 1e-5, 4e-4), (0.02, 5e-5, 1e-5)],
)
def test_the_closed_form_is_the_mixture_it_claims_to_be(effect: float, variance: float, tau2: float) -> None:
    by_integration = _mixture_ratio_by_integration(effect, variance, tau2)
    closed_form = math.sqrt(variance / (variance + tau2)) * math.exp(
        effect**2 * tau2 / (2 * variance * (variance + tau2))
    )
    assert math.exp(log_likelihood_ratio(effect, variance, tau2)) == pytest.approx(closed_form, rel=1e-12)
    assert closed_form == pytest.approx(by_integration, rel=1e-8)
    # Equivalently the ratio of the marginal N(0, V + tau2) to the null N(0, V) density.
    marginal = norm.pdf(effect, 0, math.sqrt(variance + tau2)) / norm.pdf(effect, 0, math.sqrt(variance))
    assert closed_form == pytest.approx(marginal, rel=1e-10)


def test_result_fields_follow_from_the_likelihood_ratio() -> None:
    result = normal_mixture_test(0.01, 1.039e-5, tau2=1e-4, alpha=0.05, stable_samples=10_000, candidate_samples=9_000)
    log_lambda = 0.5 * math.log(1.039e-5 / (1.039e-5 + 1e-4)) + 0.01**2 * 1e-4 / (2 * 1.039e-5 * (1.039e-5 + 1e-4))
    assert result.statistic == pytest.approx(log_lambda, rel=1e-12)
    assert result.pvalue == pytest.approx(math.exp(-log_lambda), rel=1e-12)
    assert result.samples == 9_000
    assert not result.insufficient_data
    low, high = result.confidence_interval()
    assert (low, high) == (result.ci_low, result.ci_high)
    assert low < result.effect < high


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_the_confidence_sequence_ends_where_the_test_of_that_value_rejects(alpha: float) -> None:
    effect, variance, tau2 = 0.013, 2e-5, 1e-4
    result = normal_mixture_test(effect, variance, tau2=tau2, alpha=alpha, stable_samples=1, candidate_samples=1)
    for end in (result.ci_low, result.ci_high):
        # Testing theta = end is testing zero on the estimate shifted by end.
        assert log_likelihood_ratio(effect - end, variance, tau2) == pytest.approx(math.log(1 / alpha), rel=1e-9)
    expected_half_width = math.sqrt(
        variance * (variance + tau2) / tau2 * (math.log((variance + tau2) / variance) + 2 * math.log(1 / alpha))
    )
    assert result.ci_high - effect == pytest.approx(expected_half_width, rel=1e-12)
    assert confidence_sequence_half_width(variance, tau2, alpha) == pytest.approx(expected_half_width, rel=1e-12)


def test_another_confidence_level_recomputes_this_looks_sequence() -> None:
    result = normal_mixture_test(0.01, 1e-5, tau2=1e-4, alpha=0.05, stable_samples=1, candidate_samples=1)
    wide = result.confidence_interval(0.99)
    assert wide.low < result.ci_low and wide.high > result.ci_high
    assert result.confidence_interval(0.95) == pytest.approx(result.confidence_interval())


@settings(derandomize=True)
@given(
    effect=st.floats(-0.5, 0.5),
    variance=st.floats(1e-9, 1e-1),
    tau2=st.floats(1e-8, 1.0),
    alpha=st.floats(0.001, 0.5),
)
def test_pvalue_and_confidence_sequence_agree(effect: float, variance: float, tau2: float, alpha: float) -> None:
    result = normal_mixture_test(effect, variance, tau2=tau2, alpha=alpha, stable_samples=1, candidate_samples=1)
    assert 0.0 <= result.pvalue <= 1.0
    assert result.ci_low <= result.effect <= result.ci_high
    assert all(math.isfinite(value) for value in (result.statistic, result.ci_low, result.ci_high))
    # Away from the boundary, rejecting zero is the same as zero lying outside the sequence.
    margin = result.statistic - math.log(1 / alpha)
    scale = effect**2 * tau2 / (2 * result.variance * (result.variance + tau2)) + math.log1p(tau2 / result.variance)
    if abs(margin) > 1e-9 * max(1.0, scale):
        assert (margin > 0) == (result.pvalue < alpha) == (not result.ci_low <= 0.0 <= result.ci_high)


def test_zero_variance_is_floored_not_divided_by() -> None:
    same = normal_mixture_test(0.0, 0.0, tau2=1e-4, stable_samples=5, candidate_samples=5)
    assert same.pvalue == 1.0
    assert math.isfinite(same.statistic)
    apart = normal_mixture_test(0.5, 0.0, tau2=1e-4, stable_samples=5, candidate_samples=5)
    assert apart.pvalue == 0.0
    assert math.isfinite(apart.statistic)


@pytest.mark.parametrize(
    "arguments",
    [
        {"effect": 0.1, "variance": 1e-4, "tau2": 0.0},
        {"effect": 0.1, "variance": 1e-4, "tau2": 1e-4, "alpha": 1.0},
        {"effect": 0.1, "variance": -1e-4, "tau2": 1e-4},
        {"effect": math.nan, "variance": 1e-4, "tau2": 1e-4},
    ],
)
def test_invalid_arguments_are_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        normal_mixture_test(**arguments, stable_samples=1, candidate_samples=1)


def test_mixture_variance_is_the_squared_minimum_detectable_effect() -> None:
    assert mixture_variance(0.01) == pytest.approx(1e-4)
    assert mixture_variance(-0.02) == pytest.approx(4e-4)
    with pytest.raises(ValueError):
        mixture_variance(0.0)


def test_monotone_pvalue_never_rises() -> None:
    assert monotone_pvalue(None, 0.3) == 0.3
    assert monotone_pvalue(0.2, 0.3) == 0.2
    assert monotone_pvalue(0.2, 0.1) == 0.1


def test_carry_forward_keeps_the_smallest_pvalue_and_intersects_the_sequences() -> None:
    first = normal_mixture_test(0.02, 2e-5, tau2=1e-4, stable_samples=100, candidate_samples=100)
    second = normal_mixture_test(0.008, 1e-5, tau2=1e-4, stable_samples=200, candidate_samples=200)
    assert first.pvalue < second.pvalue
    folded = carry_forward(first, second)
    assert folded.pvalue == first.pvalue
    assert folded.ci_low == max(first.ci_low, second.ci_low)
    assert folded.ci_high == min(first.ci_high, second.ci_high)
    assert folded.samples == 200
    assert carry_forward(None, second) == second


def test_carry_forward_keeps_evidence_when_a_look_has_no_data() -> None:
    evidence = normal_mixture_test(0.02, 2e-5, tau2=1e-4, stable_samples=100, candidate_samples=100)
    empty = no_data_result(tau2=1e-4, alpha=0.05, stable_samples=0, candidate_samples=0, bound=1.0)
    assert carry_forward(evidence, empty) == evidence
    assert carry_forward(empty, evidence) == evidence


def test_carry_forward_keeps_this_look_when_the_intersection_is_empty() -> None:
    early = normal_mixture_test(0.5, 1e-6, tau2=1e-4, stable_samples=10, candidate_samples=10)
    late = normal_mixture_test(-0.5, 1e-6, tau2=1e-4, stable_samples=20, candidate_samples=20)
    folded = carry_forward(early, late)
    assert (folded.ci_low, folded.ci_high) == (late.ci_low, late.ci_high)


def test_carry_forward_refuses_looks_of_different_tests() -> None:
    one = normal_mixture_test(0.01, 1e-5, tau2=1e-4, stable_samples=1, candidate_samples=1)
    other = normal_mixture_test(0.01, 1e-5, tau2=4e-4, stable_samples=1, candidate_samples=1)
    with pytest.raises(ValueError):
        carry_forward(one, other)
