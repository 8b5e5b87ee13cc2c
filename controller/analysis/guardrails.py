"""Pure guardrail assessment, after Argo's assessMetricStatus: a measurement in, an outcome out.

Outcomes are kept apart: a breach (Failed), a failed measurement (Error) and an
empty one (Inconclusive) are different things, and only Successful ever passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller.api import Guardrail


class Outcome(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    ERROR = "Error"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class Measurement:
    candidate: float | None
    stable: float | None = None
    error: str | None = None
    # For error rates: whether a sequential test shows the candidate worse than the stable.
    significantly_worse: bool | None = None


@dataclass(frozen=True)
class Assessment:
    outcome: Outcome
    reason: str


def assess(guardrail: Guardrail, measurement: Measurement) -> Assessment:
    if measurement.error is not None:
        return Assessment(Outcome.ERROR, measurement.error)
    value = measurement.candidate
    if value is None:
        return Assessment(Outcome.INCONCLUSIVE, "no data for the candidate")
    breaches = []
    if guardrail.max is not None and value > guardrail.max:
        breaches.append(f"{value:.4g} > max {guardrail.max:g}")
    if guardrail.min is not None and value < guardrail.min:
        breaches.append(f"{value:.4g} < min {guardrail.min:g}")
    if guardrail.relative_to_stable is not None:
        stable = measurement.stable
        if stable is None:
            if not breaches:
                return Assessment(Outcome.INCONCLUSIVE, "no data for the stable to compare with")
        elif value > stable * guardrail.relative_to_stable and value > 0:
            breaches.append(f"{value:.4g} > {guardrail.relative_to_stable:g} x stable {stable:.4g}")
    if breaches and measurement.significantly_worse is False:
        # A bound crossed by noise, or by a fault the stable shares (infrastructure, not the model).
        return Assessment(Outcome.SUCCESSFUL, f"{'; '.join(breaches)} but not significantly worse than stable")
    if breaches:
        return Assessment(Outcome.FAILED, "; ".join(breaches))
    return Assessment(Outcome.SUCCESSFUL, f"{value:.4g} within bounds")


def consecutive_failures(previous: int, outcome: Outcome) -> int:
    """Failures in a row; an Error or Inconclusive neither counts nor clears them."""
    if outcome == Outcome.FAILED:
        return previous + 1
    if outcome == Outcome.SUCCESSFUL:
        return 0
    return previous


def breach_action(guardrail: Guardrail) -> str:
    if guardrail.on_breach is not None:
        return guardrail.on_breach
    # A better model is supposed to predict differently: drift alone holds, it does not fail.
    return "hold" if guardrail.template == "predictionPSI" else "rollback"


def applies(guardrail: Guardrail, step_kind: str) -> bool:
    return guardrail.during is None or step_kind in guardrail.during
