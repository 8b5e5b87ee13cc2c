"""What the I/O layer saw of the world, handed to the engine as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controller.api import AnalysisVerdict, RouteAccess, Verdict


@dataclass(frozen=True)
class AnalysisSignal:
    verdict: AnalysisVerdict
    reason: str = ""
    # The abTest's verdict so far; None while it has none.
    ab_verdict: Verdict | None = None


@dataclass(frozen=True)
class WarmupReading:
    """The candidate's latency over its recent warm-up requests; `error` says why nothing was read."""

    requests: float = 0.0
    latency_p95: float | None = None  # seconds
    error: str | None = None


@dataclass(frozen=True)
class RouteRefusal:
    """The route's rule is not the rollout's to write (routers/ownership.py says why)."""

    access: RouteAccess
    message: str


@dataclass(frozen=True)
class RouteHandback:
    """What giving the route back on deletion would leave."""

    # The rule is ours: all traffic goes to the stable before it is given back.
    writable: bool
    # Why the rollout's Services and stable must outlive it (the route still needs them); None: nothing does.
    keep_services: str | None = None


@dataclass(frozen=True)
class Observations:
    template_revision: str
    stable_ready: bool = True
    candidate_ready: bool = False  # every replica Ready
    candidate_any_ready: bool = False  # at least one Ready pod (enough without a mesh)
    candidate_ready_replicas: int = 0  # Ready pods, for a step's size under capacity swap
    # The scheduler's message when candidate pods are stuck Pending (e.g. "Insufficient nvidia.com/gpu").
    candidate_unschedulable: str | None = None
    # The same for the first revision, while it is the only one.
    stable_unschedulable: str | None = None
    # Why the candidate's extended resources (GPUs) are not free, checked before it is created.
    capacity_shortfall: str | None = None
    analysis: AnalysisSignal | None = None
    # The warm-up's latest reading, while the candidate warms up.
    warmup: WarmupReading | None = None
    # When the analysis runs next (its interval): a deadline the engine wakes for.
    next_analysis_at: datetime | None = None
    # Set when the route's rule is not ours to write: nothing is written, an in-flight rollout pauses.
    route_refusal: RouteRefusal | None = None
