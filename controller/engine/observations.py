"""What the I/O layer saw of the world, handed to the engine as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from controller.analysis.readings import AnalysisSignal, WarmupReading
from controller.api import ACTIONS, Action, RouteAcceptance, RouteAccess


@dataclass(frozen=True)
class RouteRefusal:
    """The route's rule is not the rollout's to write (routers/ownership.py says why)."""

    access: RouteAccess
    message: str


@dataclass(frozen=True)
class RouteServing:
    """What the route's gateways say of it (Gateway API status): served, rejected, or not said."""

    status: Literal["True", "False", "Unknown"]
    reason: RouteAcceptance
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
    candidate_exists: bool = False  # the in-flight candidate has a Deployment
    # The scheduler's message when candidate pods are stuck Pending (e.g. "Insufficient nvidia.com/gpu").
    candidate_unschedulable: str | None = None
    # The same for the first revision, while it is the only one.
    stable_unschedulable: str | None = None
    # These come from the readings (engine.decide fills them): why the candidate's GPUs are not free
    # (before it is created), the analysis' signal, the warm-up's latest reading, and when the
    # analysis looks next (a deadline the engine wakes for).
    capacity_shortfall: str | None = None
    analysis: AnalysisSignal | None = None
    warmup: WarmupReading | None = None
    next_analysis_at: datetime | None = None
    # Set when the route's rule is not ours to write: nothing is written, an in-flight rollout pauses.
    route_refusal: RouteRefusal | None = None
    # What the gateways say of the route; None: its kind has no such status (Istio), or no route.
    route_serving: RouteServing | None = None
    # Ready endpoints behind the candidate's Service; None: no EndpointSlice seen for it.
    candidate_endpoints: int | None = None
    # The manual action annotation's value, while it is on the object.
    requested_action: str | None = None


def requested_verb(requested: str | None) -> Action | None:
    """The action an annotation value (`verb` or `verb@anything`) asks for; None if it names none."""
    verb = (requested or "").split("@", 1)[0].strip()
    return Action(verb) if verb in ACTIONS else None
