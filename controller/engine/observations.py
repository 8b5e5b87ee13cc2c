"""What the I/O layer saw of the world, handed to the engine as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# The analysis hook: observations in, verdict out.
#   pass: nothing wrong;  fail: a guardrail breached -> roll back;
#   hold: do not advance yet (e.g. drift in shadow);  error: measurements failing past the limit;
#   halt: stop and wait for a human (e.g. a sample ratio mismatch: the experiment itself is broken);
#   For abTest steps `ab_verdict` carries the statistical verdict of the step's metric.
AnalysisVerdict = Literal["pass", "fail", "hold", "error", "halt"]
ABVerdict = Literal["candidate_better", "candidate_worse", "no_difference", "inconclusive", "no_data"]


@dataclass(frozen=True)
class AnalysisSignal:
    verdict: AnalysisVerdict
    reason: str = ""
    ab_verdict: ABVerdict | None = None


@dataclass(frozen=True)
class Observations:
    template_revision: str
    stable_ready: bool = True
    candidate_ready: bool = False
    # The scheduler's message when candidate pods are stuck Pending (e.g. "Insufficient nvidia.com/gpu").
    candidate_unschedulable: str | None = None
    # The same for the first revision, while it is the only one.
    stable_unschedulable: str | None = None
    analysis: AnalysisSignal | None = None
    # When the analysis runs next (its interval): a deadline the engine wakes for.
    next_analysis_at: datetime | None = None
