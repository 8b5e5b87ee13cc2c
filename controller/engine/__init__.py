"""The rollout state machine, pure: (spec, status, observations, now) -> (actions, new status).

Nothing here imports kopf, kubernetes or httpx; an import-linter contract enforces it.
"""

from controller.engine.actions import (
    Action,
    DeleteRevision,
    EmitEvent,
    EnsureRevision,
    OrphanRevision,
    ReleaseRoute,
    ScaleRevision,
    SelectServices,
    SetRoute,
)
from controller.engine.deletion import finalize
from controller.engine.machine import Transition, failed, invalid_spec, reconcile
from controller.engine.observations import AnalysisSignal, Observations, RouteHandback, RouteRefusal, WarmupReading

__all__ = [
    "Action",
    "AnalysisSignal",
    "DeleteRevision",
    "EmitEvent",
    "EnsureRevision",
    "Observations",
    "OrphanRevision",
    "ReleaseRoute",
    "RouteHandback",
    "RouteRefusal",
    "ScaleRevision",
    "SelectServices",
    "SetRoute",
    "Transition",
    "WarmupReading",
    "failed",
    "finalize",
    "invalid_spec",
    "reconcile",
]
