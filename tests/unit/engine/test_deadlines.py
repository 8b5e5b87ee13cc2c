"""The engine names the next moment it needs a reconcile; between deadlines status does not change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.api import Analysis, ModelRolloutStatus, Phase
from controller.engine import (
    DeleteRevision,
    EmitEvent,
    Observations,
    OrphanRevision,
    ReleaseRoute,
    RouteHandback,
    SetRoute,
    finalize,
    reconcile,
)
from controller.timestamps import parse_timestamp
from tests.unit.engine.world import T0, World, deployed, make_spec

STEPS: list[dict[str, Any]] = [
    {"canary": {"weight": 10, "duration": "60s"}},
    {"abTest": {"weight": 50, "maxDuration": "300s", "minDuration": "30s", "metric": "conversion"}},
    {"pause": {}},
]


def started() -> World:
    world = deployed(World(make_spec(STEPS, scaleDownDelaySeconds=600)))
    world.new_template("rev2")
    world.step()
    return world


def test_a_timed_step_wakes_at_its_end_and_status_records_the_deadline() -> None:
    world = started()
    transition = world.step()
    assert transition.wake_at == T0 + timedelta(seconds=60)
    assert not transition.routine, "a step's end goes ahead of analysis ticks"
    assert world.status.step_ends_at is not None
    assert parse_timestamp(world.status.step_ends_at) == T0 + timedelta(seconds=60)


def test_status_does_not_change_between_deadlines() -> None:
    """No countdown in the message: a reconcile between deadlines writes nothing."""
    world = started()
    first = world.status
    world.step(1)
    world.step(29)
    assert world.status == first


def test_an_ab_step_wakes_at_min_duration_then_max_duration() -> None:
    world = started()
    world.step(61)
    assert world.status.current_step == 1
    assert world.step().wake_at == world.now + timedelta(seconds=30)
    world.step(31)
    assert world.step().wake_at == world.now - timedelta(seconds=31) + timedelta(seconds=300)


def test_the_analysis_tick_is_a_deadline() -> None:
    world = started()
    tick = world.now + timedelta(seconds=7)
    transition = reconcile(world.spec, 1, world.status,
                           Observations("rev2", candidate_ready=True, next_analysis_at=tick), world.now)
    assert transition.wake_at == tick and transition.routine, "a tick waits behind actions and step ends"
    at_the_end = reconcile(world.spec, 1, world.status, Observations(
        "rev2", candidate_ready=True, next_analysis_at=T0 + timedelta(seconds=60)), world.now)
    assert at_the_end.wake_at == T0 + timedelta(seconds=60) and not at_the_end.routine, \
        "a tick at the step's end: the end's lane"


def test_a_steps_first_look_is_at_once_but_in_the_analysis_lane() -> None:
    world = deployed(World(make_spec(STEPS, scaleDownDelaySeconds=600)))
    world.new_template("rev2")
    began = world.reconcile_once()
    assert began.status.step_started_at is not None
    assert began.wake_at == world.now and began.routine, "a first look waits behind step ends"


def test_a_pause_without_duration_asks_for_no_wake_up() -> None:
    world = started()
    world.step(61)
    world.analysis = None
    world.step(301)
    assert world.status.phase == Phase.PAUSED
    assert world.step().wake_at is None


def test_the_keep_warm_scale_down_is_a_deadline() -> None:
    world = started()
    world.step(61)
    world.step(301)
    world.act("promote-full")
    assert world.status.phase == Phase.COMPLETED
    assert world.status.scale_down_at is not None
    assert world.step().wake_at == parse_timestamp(world.status.scale_down_at)
    world.step(601)
    assert world.step().wake_at is None, "a finished rollout with nothing pending never wakes"


def test_first_deploy_completes_with_a_condition_and_says_why_it_is_pending() -> None:
    spec = make_spec(STEPS)
    pending = reconcile(spec, 1, ModelRolloutStatus(),
                        Observations("rev1", stable_ready=False, stable_unschedulable="0/3 nodes: Insufficient gpu"),
                        T0)
    assert "Insufficient gpu" in pending.status.message
    assert any(c.type == "CandidateUnschedulable" and c.status == "True" for c in pending.status.conditions)
    assert any(isinstance(a, EmitEvent) and a.reason == "Unschedulable" for a in pending.actions)
    assert pending.wake_at is not None, "readiness is re-checked even if a watch event is missed"
    done = reconcile(spec, 1, pending.status, Observations("rev1", stable_ready=True), T0)
    assert any(c.type == "Completed" and c.status == "True" for c in done.status.conditions)


def test_finalize_routes_to_stable_and_keeps_it_serving_when_orphaned() -> None:
    world = started()
    actions = finalize(world.spec, world.status, RouteHandback(writable=True))
    assert actions[0] == SetRoute(0, 0)
    assert DeleteRevision("rev2") in actions
    assert OrphanRevision("rev1") in actions
    assert actions.index(ReleaseRoute()) > actions.index(DeleteRevision("rev2")), "the route is given back last"


def test_finalize_with_delete_policy_gives_the_route_back_then_orphans_nothing() -> None:
    world = deployed(World(make_spec(STEPS).model_copy(update={"deletion_policy": "Delete"})))
    actions = finalize(world.spec, world.status, RouteHandback(writable=True))
    assert not any(isinstance(a, OrphanRevision) for a in actions)
    assert actions[0] == SetRoute(0, 0)
    assert ReleaseRoute() in actions


@pytest.mark.parametrize("handback", [
    RouteHandback(writable=True, keep_services="HTTPRoute scorer still sends traffic to Service scorer-stable"),
    RouteHandback(writable=False, keep_services="the route is not the rollout's to give back (RouteTakenBack)"),
])
def test_finalize_with_delete_policy_keeps_what_the_route_still_needs(handback: RouteHandback) -> None:
    world = deployed(World(make_spec(STEPS).model_copy(update={"deletion_policy": "Delete"})))
    actions = finalize(world.spec, world.status, handback)
    assert OrphanRevision("rev1") in actions, "the Services and the stable outlive the rollout"
    kept = [a for a in actions if isinstance(a, EmitEvent) and a.reason == "ServicesKept"]
    assert kept and handback.keep_services is not None and handback.keep_services in kept[0].message
    assert (SetRoute(0, 0) in actions) == handback.writable, "a rule not ours is never written"
    assert (ReleaseRoute() in actions) == handback.writable


def test_a_step_with_analysis_asks_for_its_first_run_at_once() -> None:
    spec = make_spec(STEPS).model_copy(update={"analysis": Analysis.model_validate({"interval": "30s"})})
    world = deployed(World(spec))
    world.new_template("rev2")
    transition = world.reconcile_once()
    assert world.status.step_started_at is not None
    assert transition.wake_at == world.now
