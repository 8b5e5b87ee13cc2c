"""A crash between any two actions, then a reconcile from the last written status, never moves traffic back.

The runtime writes status after the actions; a SIGKILL in between replays the
transition from the older status. Regression: promotion used to write the last
step's weight again before 100% (`(100,0) -> (50,0) -> (100,0)`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.api import Phase
from controller.engine import SelectServices, SetRoute
from tests.unit.engine.world import World, deployed, make_spec

STEPS: list[dict[str, Any]] = [
    {"shadow": {"percent": 50, "duration": "10s"}},
    {"canary": {"weight": 10, "duration": "10s"}},
    {"canary": {"weight": 50, "duration": "10s"}},
]


def _new_share(world: World, new: str) -> int:
    """Percent of live traffic the new revision serves, from the route and what each Service selects."""
    assert world.services is not None
    stable_sel, candidate_sel = world.services
    weight = world.route[0]
    return (weight if candidate_sel == new else 0) + ((100 - weight) if stable_sel == new else 0)


def _at_last_step() -> World:
    world = deployed(World(make_spec(STEPS)))
    world.new_template("rev2")
    world.step()
    world.step(11)
    world.step(11)
    assert world.route == (50, 0)
    return world


@pytest.mark.parametrize("crash_after", range(12))
def test_promotion_replayed_after_a_crash_only_moves_traffic_forward(crash_after: int) -> None:
    world = _at_last_step()
    shares = [_new_share(world, "rev2")]
    before = world.status
    world.now += timedelta(seconds=11)
    transition = world.reconcile_once()
    for action in transition.actions[:crash_after]:
        world.apply(action)
        if isinstance(action, SetRoute | SelectServices):
            shares.append(_new_share(world, "rev2"))
    world.status = before  # the status write never happened
    for _ in range(5):
        transition = world.reconcile_once()
        for action in transition.actions:
            world.apply(action)
            if isinstance(action, SetRoute | SelectServices):
                shares.append(_new_share(world, "rev2"))
        world.status = transition.status
    assert world.status.phase == Phase.COMPLETED
    assert shares == sorted(shares), f"traffic moved back to the old model: {shares}"
    assert shares[-1] == 100


def test_a_step_that_ends_writes_only_the_next_steps_route() -> None:
    world = deployed(World(make_spec(STEPS)))
    world.new_template("rev2")
    world.step()
    world.now += timedelta(seconds=11)
    routes = [a for a in world.reconcile_once().actions if isinstance(a, SetRoute)]
    assert [(r.weight, r.mirror) for r in routes] == [(10, 0)]
