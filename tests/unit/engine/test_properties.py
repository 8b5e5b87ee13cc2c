"""Whatever sequence of events arrives, traffic stays sane.

Invariants: weight and mirror stay within 0-100; the mirror is 0 outside a shadow
step; the stable is never scaled down or deleted while it is the stable; and
after every reconcile the route is one that a step (or all-stable) describes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis.readings import AnalysisSignal, WarmupReading
from controller.api import ACTIONS, AnalysisVerdict, Phase, Verdict
from controller.api import Action as ManualAction
from controller.engine import DeleteRevision, ScaleRevision
from controller.engine.routes import describes
from tests.unit.engine.world import World, make_spec

step_strategy = st.one_of(
    st.builds(lambda p, d: {"shadow": {"percent": p, "duration": f"{d}s"}},
              st.integers(0, 100), st.integers(1, 120)),
    st.builds(lambda w, d: {"canary": {"weight": w, "duration": f"{d}s"}},
              st.integers(0, 100), st.integers(1, 120)),
    st.builds(lambda w, d, p, h: {"abTest": {"weight": w, "maxDuration": f"{d}s", "metric": "conversion",
                                              "onInconclusive": p,
                                              **({"headerRoute": {"name": "x-arm", "value": "b"}} if h else {})}},
              st.integers(0, 100), st.integers(1, 120), st.sampled_from(["promote", "rollback", "pause"]),
              st.booleans()),
    st.builds(lambda d: {"pause": {"duration": f"{d}s"} if d else {}}, st.integers(0, 60)),
)


def _sorted_weights(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    weights = iter(sorted(s[k]["weight"] for s in steps for k in s if k in ("canary", "abTest")))
    for step in steps:
        for kind in ("canary", "abTest"):
            if kind in step:
                step[kind]["weight"] = next(weights)
    return steps


event_strategy = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 200)),
    st.tuples(st.just("action"), st.sampled_from(ACTIONS)),
    st.tuples(st.just("ready"), st.booleans()),
    st.tuples(st.just("template"), st.sampled_from(["rev1", "rev2", "rev3"])),
    st.tuples(st.just("analysis"), st.sampled_from([*AnalysisVerdict, "none"])),
    st.tuples(st.just("ab"), st.sampled_from([*Verdict, None])),
    st.tuples(st.just("warmup"), st.sampled_from([None, (5.0, 0.1), (50.0, 0.1), (50.0, 3.0), "error"])),
)


def apply_event(world: World, kind: str, value: Any) -> None:
    if kind == "tick":
        world.now += timedelta(seconds=value)
    elif kind == "action":
        world.status = world.status.model_copy(update={"pending_action": ManualAction(value)})
    elif kind == "ready":
        world.candidate_ready = value
    elif kind == "template":
        world.new_template(value)
    elif kind == "analysis":
        world.analysis = None if value == "none" else AnalysisSignal(AnalysisVerdict(value), "simulated")
    elif kind == "warmup":
        world.warmup = (None if value is None else WarmupReading(error="simulated") if value == "error"
                        else WarmupReading(*value))
    else:
        world.analysis = AnalysisSignal(AnalysisVerdict.PASS, ab_verdict=value)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(step_strategy, min_size=1, max_size=6).map(_sorted_weights),
    routing=st.sampled_from(["gatewayAPI", "istio"]),
    warmup=st.booleans(),
    events=st.lists(event_strategy, max_size=40),
)
def test_invariants_hold_for_any_event_sequence(
    steps: list[dict[str, Any]], routing: str, warmup: bool, events: list[tuple[str, Any]]
) -> None:
    gate = {"maxLatency": "500ms", "requests": 20, "mirrorPercent": 7, "timeout": "2m"}
    extra: dict[str, Any] = {"warmup": gate} if warmup else {}
    world = World(make_spec(steps, routing=routing, **extra))
    world.step()
    for kind, value in events:
        apply_event(world, kind, value)
        stable_before = world.status.stable_revision
        world.history.clear()
        world.step()
        status = world.status

        weight, mirror = world.route
        assert 0 <= weight <= 100 and 0 <= mirror <= 100
        assert (status.canary_weight, status.mirror_percent) == world.route
        in_shadow = (
            status.phase in (Phase.PROGRESSING, Phase.PAUSED)
            and status.candidate_revision is not None
            and status.current_step < len(world.spec.strategy.steps)
            and world.spec.strategy.steps[status.current_step].shadow is not None
        )
        warming = status.warmup is not None and status.warmup.passed_at is None and status.current_step == 0
        if not in_shadow and not warming:
            assert mirror == 0
        if world.header is not None:
            step = world.spec.strategy.steps[status.current_step]
            assert status.phase in (Phase.PROGRESSING, Phase.PAUSED) and status.candidate_revision
            assert step.ab_test is not None and step.ab_test.header_route is not None
        assert describes(world.spec.strategy, weight, mirror)
        if status.candidate_revision is None or status.phase not in (Phase.PROGRESSING, Phase.PAUSED):
            assert world.route == (0, 0), "outside a rollout all traffic goes to the stable"
        if stable_before == status.stable_revision:
            for action in world.history:
                if isinstance(action, ScaleRevision) and action.revision == stable_before:
                    assert action.replicas >= world.spec.replicas
                assert not (isinstance(action, DeleteRevision) and action.revision == stable_before)
        if warmup and status.candidate_revision and status.current_step == 0 and (
                status.warmup is None or status.warmup.passed_at is None):
            assert weight == 0, "no live request reaches a candidate before its warm-up passed"
        if world.candidate_ready is False and status.candidate_revision and status.phase == Phase.PROGRESSING:
            assert weight == 0 and mirror == 0, "no traffic to a candidate that is not ready"
