"""The traffic each step describes: (weight to the candidate, percent mirrored to it).

Without a mesh (`trafficRouting.replicas`) a weight is a replica count: the stable keeps its
replicas (it is never scaled down before promotion), so the candidate gets round(N * w / (100 - w)),
at least one while a rollout runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from controller.api import Step, Strategy
from controller.capacity import swap_candidate


def route_for_step(steps: Sequence[Step], index: int) -> tuple[int, int]:
    step = steps[index]
    if step.shadow is not None:
        # Users are answered by the stable only; the candidate sees copies.
        return 0, step.shadow.percent
    weight = step.traffic_weight
    if weight is not None:
        return weight, 0
    # A pause holds the weight of the last traffic step before it, as in Argo.
    earlier = [s.traffic_weight for s in steps[:index] if s.traffic_weight is not None]
    return (earlier[-1] if earlier else 0), 0


def describes(strategy: Strategy, weight: int, mirror: int) -> bool:
    """True when some step, the warm-up, or all-stable describes this traffic state."""
    steps = strategy.steps
    warming = strategy.warmup is not None and (weight, mirror) == (0, strategy.warmup.mirror_percent)
    return warming or (weight, mirror) == (0, 0) or (weight, mirror) == (100, 0) or any(
        route_for_step(steps, i) == (weight, mirror) for i in range(len(steps))
    )


def candidate_replicas(stable_replicas: int, weight: int) -> int:
    if weight >= 100:
        return stable_replicas
    # One warm pod even at 0%: the candidate must be Ready before any step can start.
    return max(1, round(stable_replicas * weight / (100 - weight)))


def effective_weight(stable_replicas: int, candidate: int) -> int:
    total = stable_replicas + candidate
    return math.floor(100 * candidate / total + 0.5) if total else 0


def swap_sizes(steps: Sequence[Step], index: int, replicas: int, min_available: int) -> tuple[int, int]:
    """Under capacity swap, (stable, candidate) replicas for step `index` (past the last step: the promotion).

    They add up to `replicas`, the GPUs the stable held alone. The candidate never shrinks during a
    rollout (a shadow step after a canary keeps its pods), so no step waits for pods to stop. For the
    promotion the stable keeps `min_available` pods, which serve until the route moves everything to
    the candidate and then stay warm for undo.
    """
    full = replicas - min_available
    weights = [100] if index >= len(steps) else [route_for_step(steps, i)[0] for i in range(index + 1)]
    candidate = max(full if weight >= 100 else swap_candidate(replicas, weight) for weight in weights)
    return replicas - candidate, candidate
