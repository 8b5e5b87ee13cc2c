"""The router Protocol, after Argo Rollouts' TrafficRoutingReconciler.

`set_route` writes weight and mirror together, so a rollback is one write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.api import RouteAccess
from controller.routers.ownership import Access, Release


class RouterError(RuntimeError):
    """The route cannot be written as asked (missing route, no managed rule, unsupported feature)."""


class RouteRefused(RouterError):
    """The rule is not ours to write: never handed to the rollout, or taken back by its owner."""

    def __init__(self, access: RouteAccess, message: str) -> None:
        super().__init__(message)
        self.access = access


@dataclass(frozen=True)
class HeaderRoute:
    """Requests with this header value go to the candidate regardless of weight (A/B cohorts)."""

    header: str
    value: str


class TrafficRouter(Protocol):
    kind: str

    def set_route(self, weight: int, mirror: int, header: HeaderRoute | None = None, compare: bool = False) -> None:
        """`weight`% of live traffic to the candidate, `mirror`% mirrored there (to the comparator instead
        with `compare`), and the header cohort (or none) to the candidate: all in one write, so a rollback
        is one write."""

    def access(self) -> Access:
        """Whether the rollout may write its rule (routers/ownership.py); RouterError: the route is missing."""

    def preview_release(self) -> Release:
        """What `release` would leave, without writing it."""

    def release(self) -> None:
        """Give the rule back as it was before the rollout managed it, minus our backends."""
