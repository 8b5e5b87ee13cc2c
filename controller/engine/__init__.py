"""The rollout's decisions, pure: plan what to measure, then (spec, status, observations, readings, now)
-> (actions, new status).

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
from controller.engine.decide import Readings, decide
from controller.engine.deletion import finalize
from controller.engine.draft import Transition
from controller.engine.machine import failed, invalid_spec, reconcile
from controller.engine.observations import Observations, RouteHandback, RouteRefusal, RouteServing
from controller.engine.plan import Plan, plan

__all__ = [
    "Action",
    "DeleteRevision",
    "EmitEvent",
    "EnsureRevision",
    "Observations",
    "OrphanRevision",
    "Plan",
    "Readings",
    "ReleaseRoute",
    "RouteHandback",
    "RouteRefusal",
    "RouteServing",
    "ScaleRevision",
    "SelectServices",
    "SetRoute",
    "Transition",
    "decide",
    "failed",
    "finalize",
    "invalid_spec",
    "plan",
    "reconcile",
]
