"""The engine's two calls around the measuring port: which readings are due (plan), and how the
readings become the stored status (decide), with the action annotation taken along the way."""

from __future__ import annotations

from datetime import timedelta

from controller import api
from controller.analysis.readings import ErrorRate, Measurements, Outcomes, RequestCounts
from controller.engine import EmitEvent, Observations, Readings, decide, plan
from controller.engine.decide import AnalysisReadings, CostReadings
from controller.engine.plan import COST_INTERVAL
from controller.timestamps import format_timestamp
from tests.unit.engine.world import T0, World, deployed, make_spec

CANARY = [{"canary": {"weight": 20, "duration": "1h"}}]
ERRORS = {"name": "errors", "template": "errorRate", "relativeToStable": 1.0}


def _in_step(**extra: object) -> World:
    """A rollout in its first canary step, the candidate ready, with an errorRate guardrail."""
    body = make_spec(CANARY).model_dump(by_alias=True, exclude_none=True)
    body.update(extra)
    body["analysis"] = {"prometheus": {"address": "http://prometheus.test:9090"}, "interval": "10s",
                        "guardrails": [ERRORS]}
    world = deployed(World(api.ModelRolloutSpec.model_validate(body)))
    world.revision = "rev2"
    world.step()
    assert world.status.phase == api.Phase.PROGRESSING and world.status.candidate_ready, world.status
    return world


def _seen(world: World, **fields: object) -> Observations:
    ready: dict[str, object] = {"candidate_ready": True, "candidate_any_ready": True, "candidate_exists": True}
    return Observations(template_revision=world.revision, **{**ready, **fields})  # type: ignore[arg-type]


def test_a_running_step_plans_a_look_with_the_readings_its_guardrail_needs() -> None:
    world = _in_step()
    planned = plan(world.spec, world.status, _seen(world), world.now + timedelta(seconds=30))
    assert planned.analysis is not None and planned.held is None
    assert RequestCounts("rev2") in planned.analysis.readings and RequestCounts("rev1") in planned.analysis.readings
    assert ErrorRate("rev2", "30s") in planned.analysis.readings, "the window is cut at the step's start"
    assert planned.next_analysis_at == world.now + timedelta(seconds=40)


def test_a_pending_action_plans_no_query_and_the_first_look_holds() -> None:
    world = _in_step()
    planned = plan(world.spec, world.status, _seen(world, requested_action="abort@1"), world.now)
    assert planned.analysis is None and planned.warmup is None
    assert planned.held is not None and planned.held.verdict == api.AnalysisVerdict.HOLD
    unknown = plan(world.spec, world.status, _seen(world, requested_action="explode"), world.now)
    assert unknown.analysis is not None, "an annotation that names no action holds nothing up"


def test_the_look_is_judged_into_status_and_a_failed_measurement_is_an_error_signal() -> None:
    world = _in_step()
    now = world.now + timedelta(seconds=30)
    seen = _seen(world)
    planned = plan(world.spec, world.status, seen, now)
    assert planned.analysis is not None
    measured = Measurements({reading: Outcomes(100.0, 1.0) if isinstance(reading, RequestCounts) else 0.01
                             for reading in planned.analysis.readings})
    judged = decide(world.spec, 1, world.status, seen, planned, Readings(AnalysisReadings(measured, took_ms=3.0)), now)
    analysis = judged.status.analysis
    assert analysis is not None and analysis.looks == 1 and analysis.duration_ms == 3.0
    assert analysis.guardrails["errors"].reason == "counting from this look"
    refused = decide(world.spec, 1, world.status, seen, planned, Readings(AnalysisReadings(error="no Secret")), now)
    assert refused.status.analysis is None and refused.status.phase == api.Phase.PAUSED
    assert "no Secret" in refused.status.message and refused.wake_at == planned.next_analysis_at


def test_the_action_annotation_is_taken_once_and_an_unknown_one_is_told() -> None:
    world = _in_step()
    seen = _seen(world, requested_action="abort@2026")
    taken = decide(world.spec, 1, world.status, seen, plan(world.spec, world.status, seen, world.now), Readings(),
                   world.now)
    assert taken.takes_request and taken.status.last_action == api.Action.ABORT
    assert taken.status.phase == api.Phase.ROLLED_BACK
    unknown = _seen(world, requested_action="explode")
    told = decide(world.spec, 1, world.status, unknown, plan(world.spec, world.status, unknown, world.now),
                  Readings(), world.now)
    assert told.takes_request and told.status.pending_action is None
    assert any(isinstance(a, EmitEvent) and a.reason == "UnknownAction" for a in told.actions)
    pending = world.status.model_copy(update={"pending_action": api.Action.PAUSE})
    waiting = decide(world.spec, 1, pending, seen, plan(world.spec, pending, seen, world.now), Readings(), world.now)
    assert not waiting.takes_request and waiting.wake_at == world.now, "the next action is taken right after"


def test_a_new_candidate_starts_a_new_record_of_decisions() -> None:
    world = _in_step()
    decision = api.Decision(step=0, test="guardrail errors", verdict="breach: rollback", at=format_timestamp(T0))
    status = world.status.model_copy(update={"decisions": [decision]})
    kept = decide(world.spec, 1, status, _seen(world), plan(world.spec, status, _seen(world), world.now), Readings(),
                  world.now)
    assert kept.status.decisions == [decision]
    world.revision = "rev3"
    seen = _seen(world, candidate_exists=False)
    restarted = decide(world.spec, 1, status, seen, plan(world.spec, status, seen, world.now), Readings(), world.now)
    assert restarted.status.candidate_revision == "rev3" and restarted.status.decisions == []


def test_cost_reads_every_revision_that_may_serve_once_a_minute() -> None:
    world = _in_step(cost={"gpuHourlyCost": 2.5})
    spec = world.spec
    planned = plan(spec, world.status, _seen(world), world.now)
    assert planned.cost == ("rev1", "rev2")
    read = CostReadings({"rev1": 1000.0, "rev2": 100.0}, {"rev1": 2, "rev2": 2})
    first = decide(spec, 1, world.status, _seen(world), planned, Readings(cost=read), world.now)
    assert first.status.cost is not None and first.status.cost.candidate is not None
    assert first.wake_at is not None and first.wake_at <= world.now + COST_INTERVAL
    later = plan(spec, first.status, _seen(world), world.now + timedelta(seconds=30))
    assert later.cost == (), "not due for a minute"
    minute = world.now + COST_INTERVAL
    failed = decide(spec, 1, first.status, _seen(world), plan(spec, first.status, _seen(world), minute),
                    Readings(cost=CostReadings(error="prometheus answered HTTP 500")), minute)
    assert failed.status.cost is not None and failed.status.cost.reason == "prometheus answered HTTP 500"
    assert failed.status.cost.candidate is not None and failed.status.cost.candidate.requests is None


def test_capacity_is_planned_only_before_the_candidate_exists_and_never_under_swap() -> None:
    world = deployed(World(make_spec(CANARY)))
    world.revision = "rev2"
    assert plan(world.spec, world.status, _seen(world, candidate_exists=False), world.now).capacity == 2
    assert plan(world.spec, world.status, _seen(world), world.now).capacity is None
