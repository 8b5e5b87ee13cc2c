"""No mesh: the weight is approximated by the candidate's replica count; mirroring is impossible.

The stable keeps its replicas (it is never scaled down before promotion), so the
candidate gets round(N * w / (100 - w)) replicas, at least one while a rollout runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from controller.routers.base import HeaderRoute, RouterError


def candidate_replicas(stable_replicas: int, weight: int) -> int:
    if weight >= 100:
        return stable_replicas
    # One warm pod even at 0%: the candidate must be Ready before any step can start.
    return max(1, round(stable_replicas * weight / (100 - weight)))


def effective_weight(stable_replicas: int, candidate: int) -> int:
    total = stable_replicas + candidate
    return math.floor(100 * candidate / total + 0.5) if total else 0


class ReplicasRouter:
    kind = "replicas"

    def __init__(self, stable_replicas: int, scale_candidate: Callable[[int], None],
                 candidate_is_stable: bool) -> None:
        self.stable_replicas = stable_replicas
        self.scale_candidate = scale_candidate
        self.candidate_is_stable = candidate_is_stable
        self.calls = 0
        self.last: tuple[int, int] | None = None

    @property
    def api_calls(self) -> int:
        return self.calls

    def set_route(self, weight: int, mirror: int, header: HeaderRoute | None = None) -> None:
        if mirror:
            raise RouterError("trafficRouting.replicas cannot mirror traffic")
        if header:
            raise RouterError("trafficRouting.replicas cannot route by header")
        if self.candidate_is_stable:
            return  # The same Deployment: its size is the stable's, set by the workloads.
        self.scale_candidate(candidate_replicas(self.stable_replicas, weight))
        self.calls += 1
        self.last = (weight, mirror)

    def set_header_route(self, route: HeaderRoute | None) -> None:
        if route is not None:
            raise RouterError("trafficRouting.replicas cannot route by header")

    def verify(self, weight: int, mirror: int) -> bool | None:
        return None  # The ratio is an approximation: there is nothing exact to verify.

    def remove_managed_routes(self) -> None:
        return None
