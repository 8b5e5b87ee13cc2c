"""A rule that is not the rollout's to write: nothing is done, an in-flight rollout pauses, and
it resumes with its step started over once the rule is handed back."""

from __future__ import annotations

from typing import Any

from controller.api import Action, PauseReason, Phase, RouteAccess
from controller.engine import EmitEvent, RouteRefusal, SetRoute
from tests.unit.engine.world import World, make_spec

STEPS: list[dict[str, Any]] = [
    {"canary": {"weight": 10, "duration": "60s"}},
    {"canary": {"weight": 50, "duration": "60s"}},
]
TAKEN = RouteRefusal(RouteAccess.TAKEN_BACK, "HTTPRoute scorer any rule no longer sends traffic to Service "
                                              "scorer-stable: its owner took it back")


def condition(world: World, type_: str) -> tuple[str, str] | None:
    found = next((c for c in world.status.conditions if c.type == type_), None)
    return (found.status, found.reason) if found else None


def test_a_rule_never_handed_over_is_not_touched_and_nothing_is_deployed() -> None:
    world = World(make_spec(STEPS))
    world.route_refusal = RouteRefusal(RouteAccess.NOT_OURS, "HTTPRoute team-b rule 'b' sends no traffic to ...")
    transition = world.step()
    assert world.deployments == {} and not any(isinstance(a, SetRoute) for a in world.history)
    assert all(isinstance(a, EmitEvent) for a in transition.actions), "only an Event"
    assert condition(world, "RouteManaged") == ("False", "RouteNotOurs")
    assert world.reasons() == ["RouteNotOurs"]
    world.step(5)
    assert world.reasons() == ["RouteNotOurs"], "told once, not on every pass"


def test_a_taken_back_rule_pauses_the_canary_and_the_hand_back_restarts_its_step() -> None:
    world = World(make_spec(STEPS))
    world.candidate_ready = True
    world.step()
    world.new_template("rev2")
    world.step()
    world.step(30)
    assert world.route == (10, 0) and world.status.current_step == 0
    writes = len([a for a in world.history if isinstance(a, SetRoute)])

    world.route_refusal = TAKEN
    world.step(40)  # past the step's end: a paused rollout does not advance
    assert world.status.phase == Phase.PAUSED and world.status.pause_reason == PauseReason.ROUTE
    assert condition(world, "RouteManaged") == ("False", "RouteTakenBack")
    assert condition(world, "Paused") == ("True", "RouteTakenBack")
    world.act(Action.PROMOTE)
    assert world.status.pending_action == Action.PROMOTE, "an action waits until the rule is back"
    assert len([a for a in world.history if isinstance(a, SetRoute)]) == writes, "nothing written"
    assert world.status.current_step == 0

    world.route_refusal = None
    world.status = world.status.model_copy(update={"pending_action": None})
    world.step(1)
    assert condition(world, "RouteManaged") == ("True", "HandedBack")
    assert "RouteHandedBack" in world.reasons()
    assert world.status.phase == Phase.PROGRESSING and world.route == (10, 0)
    started = world.status.step_started_at
    assert started is not None and world.status.step_ends_at is not None
    world.step(59)
    assert world.status.current_step == 0, "the step's clock started over at the hand-back"
    world.step(2)
    assert world.status.current_step == 1 and world.route == (50, 0)
