"""The capacity check before a candidate is created: surge holds as long as it takes, wait gives up."""

from __future__ import annotations

from controller.api import ConditionType, Phase
from controller.engine import EnsureRevision
from tests.unit.engine.world import World, deployed, make_spec

SHORT = "0 of 2 candidate pods fit: 2 nvidia.com/gpu missing (1 nvidia.com/gpu a pod; 2 nodes its template can land on)"


def _condition(world: World) -> tuple[str, str] | None:
    found = next((c for c in world.status.conditions if c.type == ConditionType.INSUFFICIENT_CAPACITY.value), None)
    return (found.status, found.message) if found else None


def _waiting(policy: str = "surge") -> World:
    world = deployed(World(make_spec([{"canary": {"weight": 20, "duration": "1m"}}],
                                     capacity={"policy": policy, "timeout": "10m"})))
    world.capacity_shortfall = SHORT
    world.new_template("rev2")
    world.step()
    return world


def test_surge_creates_nothing_while_the_gpus_are_missing_and_proceeds_when_they_are_free() -> None:
    world = _waiting()
    assert "rev2" not in world.deployments, "no candidate until its GPUs are free"
    assert world.route == (0, 0) and world.deployments == {"rev1": 2}
    assert _condition(world) == ("True", SHORT)
    assert world.status.message == f"waiting for capacity: {SHORT}"
    assert "InsufficientCapacity" in world.reasons()
    transition = world.step(3600)
    assert transition.wake_at is not None, "it looks again: pods and nodes changing wake no rollout"
    assert world.status.phase == Phase.PROGRESSING and "rev2" not in world.deployments, "surge never gives up"

    world.capacity_shortfall = None
    world.step(15)
    assert world.deployments.get("rev2") == 2
    assert _condition(world) == ("False", "")
    assert world.status.capacity_wait_since is None
    assert any(isinstance(a, EnsureRevision) and a.revision == "rev2" for a in world.history)


def test_wait_gives_up_after_its_timeout_and_rolls_back_without_touching_the_stable() -> None:
    world = _waiting("wait")
    world.step(599)
    assert world.status.phase == Phase.PROGRESSING
    world.step(2)
    assert world.status.phase == Phase.ROLLED_BACK
    rolled = next(c for c in world.status.conditions if c.type == ConditionType.ROLLED_BACK.value)
    assert rolled.reason == "CapacityTimeout" and SHORT in rolled.message
    assert world.route == (0, 0) and world.deployments == {"rev1": 2}, "the stable is as it was"


def test_a_new_template_waits_afresh() -> None:
    world = _waiting("wait")
    world.step(500)
    world.new_template("rev3")
    world.step(200)
    assert world.status.phase == Phase.PROGRESSING, "the timeout counts from the new candidate's start"
    assert world.status.candidate_revision == "rev3" and _condition(world) == ("True", SHORT)
