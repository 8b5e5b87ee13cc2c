"""What the route's gateways say of it: a refusal pauses a running canary until the route is
accepted again, then its step starts over; silence is said and holds nothing; and no step sends
traffic to a candidate Service that has no ready endpoint."""

from __future__ import annotations

from typing import Any

from controller.api import Action, PauseReason, Phase, RouteAcceptance
from controller.engine import RouteServing
from tests.unit.engine.world import World, make_spec

STEPS: list[dict[str, Any]] = [
    {"canary": {"weight": 10, "duration": "60s"}},
    {"canary": {"weight": 50, "duration": "60s"}},
]
REJECTED = RouteServing("False", RouteAcceptance.ROUTE_NOT_ACCEPTED,
                        "Gateway apps/gateway (nope) does not accept the route: NoMatchingParent: no listener nope")
ACCEPTED = RouteServing("True", RouteAcceptance.ACCEPTED, "accepted by Gateway apps/gateway")
SILENT = RouteServing("Unknown", RouteAcceptance.NOT_REPORTED, "no gateway has reported on the route")


def condition(world: World, type_: str) -> tuple[str, str] | None:
    found = next((c for c in world.status.conditions if c.type == type_), None)
    return (found.status, found.reason) if found else None


def canary_at_first_step(world: World) -> World:
    world.step()
    world.new_template("rev2")
    world.step()
    world.step(30)
    assert world.route == (10, 0) and world.status.current_step == 0
    return world


def test_a_rejected_route_pauses_the_canary_and_its_acceptance_restarts_the_step() -> None:
    world = canary_at_first_step(World(make_spec(STEPS), route_serving=ACCEPTED))
    assert condition(world, "RouteAccepted") == ("True", "Accepted")

    world.route_serving = REJECTED
    world.step(40)  # past the step's end: the paused canary does not advance
    assert world.status.phase == Phase.PAUSED and world.status.pause_reason == PauseReason.GATEWAY
    assert condition(world, "RouteAccepted") == ("False", "RouteNotAccepted")
    assert condition(world, "Paused") == ("True", "RouteNotAccepted")
    assert world.status.current_step == 0 and world.route == (10, 0), "the step's route stays written"
    assert world.reasons().count("RouteNotAccepted") == 1
    world.step(5)
    assert world.reasons().count("RouteNotAccepted") == 1, "told once, not on every pass"

    world.route_serving = ACCEPTED
    world.step(1)
    assert world.status.phase == Phase.PROGRESSING and world.status.pause_reason is None
    assert world.reasons().count("RouteAccepted") == 1
    assert world.status.current_step == 0, "the step starts over: the traffic it measured was nobody's"
    world.step(59)
    assert world.status.current_step == 0
    world.step(2)
    assert world.status.current_step == 1 and world.route == (50, 0)


def test_a_rejection_does_not_lift_a_users_pause_and_the_acceptance_does_not_resume_it() -> None:
    world = canary_at_first_step(World(make_spec(STEPS), route_serving=ACCEPTED))
    world.act(Action.PAUSE)
    world.route_serving = REJECTED
    world.step(1)
    assert world.status.pause_reason == PauseReason.USER
    world.route_serving = ACCEPTED
    world.step(1)
    assert world.status.phase == Phase.PAUSED and world.status.pause_reason == PauseReason.USER


def test_a_route_nobody_reports_on_is_said_to_be_unwatched_and_the_canary_goes_on() -> None:
    world = canary_at_first_step(World(make_spec(STEPS), route_serving=SILENT))
    assert condition(world, "RouteAccepted") == ("Unknown", "NotReported")
    world.step(31)
    assert world.status.current_step == 1 and "RouteNotAccepted" not in world.reasons()


def test_no_traffic_reaches_a_candidate_service_without_a_ready_endpoint() -> None:
    world = World(make_spec(STEPS), candidate_endpoints=0)
    world.step()
    world.new_template("rev2")
    world.step()
    world.step(30)
    assert world.route == (0, 0) and world.status.step_started_at is None
    assert world.status.message == "candidate pods are Ready, but the candidate Service has no ready endpoint"
    assert world.reasons().count("CandidateUnreachable") == 1
    world.candidate_endpoints = 2
    world.step(1)
    assert world.route == (10, 0) and world.status.step_started_at is not None
