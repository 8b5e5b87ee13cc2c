"""What the I/O layer saw of the world, handed to the engine as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AnalysisVerdict(StrEnum):
    """The analysis hook: observations in, verdict out."""

    PASS = "pass"  # noqa: S105 - nothing wrong (not a password)
    FAIL = "fail"  # a guardrail breached: roll back
    HOLD = "hold"  # do not advance yet (e.g. drift in shadow, no data yet)
    ERROR = "error"  # measurements failing past the limit: onError decides
    HALT = "halt"  # the experiment itself is broken (a sample-ratio mismatch): wait for a human


class ABVerdict(StrEnum):
    """The statistical verdict of an abTest step's metric.

    The same names as `stats.judge.Verdict`, kept apart on purpose: importing `controller.stats`
    loads scipy, and the engine (so the idle operator) must not."""

    CANDIDATE_BETTER = "candidate_better"
    CANDIDATE_WORSE = "candidate_worse"
    NO_DIFFERENCE = "no_difference"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class AnalysisSignal:
    verdict: AnalysisVerdict
    reason: str = ""
    ab_verdict: ABVerdict | None = None


@dataclass(frozen=True)
class Observations:
    template_revision: str
    stable_ready: bool = True
    candidate_ready: bool = False  # every replica Ready
    candidate_any_ready: bool = False  # at least one Ready pod (enough without a mesh)
    # The scheduler's message when candidate pods are stuck Pending (e.g. "Insufficient nvidia.com/gpu").
    candidate_unschedulable: str | None = None
    # The same for the first revision, while it is the only one.
    stable_unschedulable: str | None = None
    analysis: AnalysisSignal | None = None
    # When the analysis runs next (its interval): a deadline the engine wakes for.
    next_analysis_at: datetime | None = None
