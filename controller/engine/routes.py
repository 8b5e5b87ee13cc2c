"""The traffic each step describes: (weight to the candidate, percent mirrored to it)."""

from __future__ import annotations

from collections.abc import Sequence

from controller.api import Step


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


def describes(steps: Sequence[Step], weight: int, mirror: int) -> bool:
    """True when some step (or all-stable) describes this traffic state."""
    return (weight, mirror) == (0, 0) or (weight, mirror) == (100, 0) or any(
        route_for_step(steps, i) == (weight, mirror) for i in range(len(steps))
    )
