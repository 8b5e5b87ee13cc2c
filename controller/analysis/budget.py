"""How a step's error budget (analysis.alpha) is spent: the one place the alpha split is decided.

A step's statistical guardrails share analysis.alpha equally (Bonferroni: valid under any dependence
between them); each guardrail's share is split between the test since the step began and the
change detector (Shiryaev-Roberts, restarted), again by a union bound. The analysis, its unit
tests and `benchmarks.decision_quality` all build their tests from this.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller import api
from controller.analysis.readings import Look, applying

# The share of a guardrail's alpha spent by the test since the step began; the rest is the change
# detector's, which catches a regression that starts late in a long step.
CUMULATIVE_SHARE = 0.9


@dataclass(frozen=True)
class AlphaBudget:
    # analysis.alpha: the chance of any false rollback in a step.
    step: float
    # The step's statistical guardrails, which share it.
    guardrails: int = 1

    @property
    def per_guardrail(self) -> float:
        return self.step / self.guardrails

    @property
    def cumulative(self) -> float:
        """One guardrail's alpha for its test since the step began."""
        return self.per_guardrail * CUMULATIVE_SHARE

    @property
    def detector(self) -> float:
        """One guardrail's alpha for its change detector."""
        return self.per_guardrail * (1 - CUMULATIVE_SHARE)


def step_budget(analysis: api.Analysis, look: Look) -> AlphaBudget:
    """The look's budget: analysis.alpha, shared by the statistical guardrails of this step."""
    tests = [g for g in applying(analysis, look) if g.template in api.TEST_TEMPLATES]
    return AlphaBudget(analysis.alpha, max(1, len(tests)))
