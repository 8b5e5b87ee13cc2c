"""Threshold guardrails (a custom query, predictionPSI), after Argo's assessMetricStatus: a value in, an outcome out.

Outcomes are kept apart: a breach, a failed measurement (Error) and an empty one
(NoData) are different things, and only Passed ever passes. These carry no error
guarantee, except predictionPSI's significance gate in `judge`: the statistical guardrails are in `step_tests`.
"""

from __future__ import annotations

from controller.api import Guardrail, GuardrailOutcome


def outcome_of(guardrail: Guardrail, value: float | None, stable: float | None) -> tuple[GuardrailOutcome, str]:
    if value is None:
        return GuardrailOutcome.NO_DATA, "no data for the candidate"
    breaches = []
    if guardrail.max is not None and value > guardrail.max:
        breaches.append(f"{value:.4g} > max {guardrail.max:g}")
    if guardrail.min is not None and value < guardrail.min:
        breaches.append(f"{value:.4g} < min {guardrail.min:g}")
    if guardrail.relative_to_stable is not None:
        if stable is None:
            if not breaches:
                return GuardrailOutcome.NO_DATA, "no data for the stable to compare with"
        elif value > stable * guardrail.relative_to_stable and value > 0:
            breaches.append(f"{value:.4g} > {guardrail.relative_to_stable:g} x stable {stable:.4g}")
    if breaches:
        return GuardrailOutcome.BREACHED, "; ".join(breaches)
    return GuardrailOutcome.PASSED, f"{value:.4g} within bounds"


def consecutive_failures(previous: int, outcome: GuardrailOutcome) -> int:
    """Breaches in a row; an Error or NoData neither counts nor clears them."""
    if outcome == GuardrailOutcome.BREACHED:
        return previous + 1
    if outcome == GuardrailOutcome.PASSED:
        return 0
    return previous


def breach_action(guardrail: Guardrail) -> str:
    if guardrail.on_breach is not None:
        return guardrail.on_breach
    # A better model is supposed to predict differently: drift alone holds, it does not fail.
    return "hold" if guardrail.template == "predictionPSI" else "rollback"
