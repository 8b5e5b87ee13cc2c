"""capacity.policy swap: the stable gives the candidate exactly its pods, step by step, and gets them back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.analysis.readings import AnalysisSignal
from controller.api import AnalysisVerdict, ConditionType, Phase
from controller.engine import DeleteRevision, EnsureRevision, ScaleRevision, SetRoute
from controller.engine.routes import describes, swap_sizes
from tests.unit.engine.test_properties import apply_event, event_strategy
from tests.unit.engine.world import World, deployed, make_spec

STEPS: list[dict[str, Any]] = [
    {"shadow": {"percent": 100, "duration": "1m"}},
    {"canary": {"weight": 25, "duration": "1m"}},
    {"canary": {"weight": 50, "duration": "1m"}},
]


def _swapping(delay: int = 600, min_available: int = 1) -> World:
    spec = make_spec(STEPS, replicas=4, capacity={"policy": "swap", "minAvailable": min_available},
                     scaleDownDelaySeconds=delay)
    world = deployed(World(spec))
    world.new_template("rev2")
    world.step()
    world.step()  # Its pods are Ready: the shadow step starts.
    return world


def _scales(world: World, since: int) -> list[tuple[str, int]]:
    return [(a.revision, a.replicas) for a in world.history[since:] if isinstance(a, ScaleRevision | EnsureRevision)]


def test_the_sizes_follow_the_weights_and_never_shrink_the_candidate() -> None:
    more: list[dict[str, Any]] = [{"shadow": {"percent": 10, "duration": "1m"}}, {"canary": {"weight": 100}}]
    steps = make_spec([*STEPS, *more]).strategy.steps
    sizes = [swap_sizes(steps, index, 4, 1) for index in range(len(steps) + 1)]
    assert sizes == [(3, 1), (3, 1), (2, 2), (2, 2), (1, 3), (1, 3)]


def test_the_stable_shrinks_before_the_candidate_is_created_and_no_step_outgrows_min_available() -> None:
    world = _swapping()
    assert world.deployments == {"rev1": 3, "rev2": 1}
    scales = _scales(world, 0)
    assert scales.index(("rev1", 3)) < scales.index(("rev2", 1)), "the GPUs are freed first"
    assert world.route == (0, 100)
    world.step(60)
    assert world.route == (25, 0) and world.deployments == {"rev1": 3, "rev2": 1}


def test_a_step_that_needs_more_pods_keeps_the_last_route_until_they_are_ready() -> None:
    world = _swapping()
    world.step(60)
    world.candidate_ready_pods = 1  # The second candidate pod is still loading its model.
    before = len(world.history)
    world.step(60)
    assert world.deployments == {"rev1": 2, "rev2": 2}
    scales = _scales(world, before)
    assert scales.index(("rev1", 2)) < scales.index(("rev2", 2))
    assert world.route == (25, 0), "the 50% step waits for its pods; the 25% route stays"
    assert world.status.step_started_at is None and world.status.current_step == 2
    assert world.status.message == "making room for step 3/3: stable to 2, candidate to 2 replicas"
    world.step(600)
    assert world.route == (25, 0) and world.status.phase == Phase.PROGRESSING
    world.candidate_ready_pods = None
    world.step(15)
    assert world.route == (50, 0) and world.status.step_started_at is not None


def test_a_failed_verdict_while_making_room_still_rolls_back() -> None:
    world = _swapping()
    world.step(60)
    world.candidate_ready_pods = 1
    world.step(60)
    world.analysis = AnalysisSignal(AnalysisVerdict.FAIL, "error rate 9% > 1%")
    world.step(15)
    assert world.status.phase == Phase.ROLLED_BACK and world.route == (0, 0)
    assert world.deployments == {"rev1": 4, "rev2": 0}


def test_an_abort_gives_the_stable_its_size_back_after_the_candidate_stops() -> None:
    world = _swapping()
    world.step(60)
    world.step(60)
    world.step(15)  # The 50% step's second pod is Ready at the next look.
    assert world.route == (50, 0) and world.deployments == {"rev1": 2, "rev2": 2}
    before = len(world.history)
    world.act("abort")
    assert world.route == (0, 0) and world.status.phase == Phase.ROLLED_BACK
    assert world.deployments == {"rev1": 4, "rev2": 0}
    scales = _scales(world, before)
    assert scales.index(("rev2", 0)) < scales.index(("rev1", 4)), "the candidate's GPUs free first"
    rolled = next(c for c in world.status.conditions if c.type == ConditionType.ROLLED_BACK.value)
    assert rolled.reason == "Aborted"


def _promoted() -> World:
    world = _swapping(delay=600)
    for seconds in (60, 60, 15, 60, 15):  # the 25% and 50% steps, each step's pods Ready at the next look
        world.step(seconds)
    return world


def test_the_promotion_keeps_min_available_old_pods_warm_then_hands_them_over() -> None:
    world = _promoted()
    assert world.status.phase == Phase.COMPLETED and world.status.stable_revision == "rev2"
    assert world.route == (0, 0)
    assert world.deployments == {"rev1": 1, "rev2": 3}, "the old model stays loaded on its last GPU"
    routes = [(a.weight, a.mirror) for a in world.history if isinstance(a, SetRoute)]
    assert list(dict.fromkeys(routes)) == [(0, 0), (0, 100), (25, 0), (50, 0), (100, 0)], \
        "no step's resize ever took traffic back from the candidate"
    world.step(600)
    assert world.deployments == {"rev2": 4}


def test_undo_in_the_warm_window_gives_the_old_model_its_size_back() -> None:
    world = _promoted()
    world.act("undo")
    assert world.status.stable_revision == "rev1" and world.route == (0, 0)
    assert world.deployments == {"rev1": 4, "rev2": 0}


def test_swap_is_refused_where_the_stable_could_not_keep_min_available() -> None:
    with pytest.raises(ValidationError, match="at least minAvailable"):
        _swapping(min_available=3)


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0, 10, 25, 50, 75, 100]), min_size=1, max_size=5).map(sorted),
    events=st.lists(event_strategy, max_size=40),
)
def test_the_two_versions_never_hold_more_than_the_stables_gpus(weights: list[int],
                                                              events: list[tuple[str, Any]]) -> None:
    """After every single action, whatever happens: both versions together run at most `replicas` pods, the
    stable keeps min_available of them, and the route is one a step describes."""
    steps: list[dict[str, Any]] = [{"canary": {"weight": w, "duration": "30s"}} for w in weights]
    world = deployed(World(make_spec(steps, replicas=4, capacity={"policy": "swap"})))
    for kind, value in events:
        apply_event(world, kind, value)
        stable = world.status.stable_revision
        sizes = dict(world.deployments)
        world.history.clear()
        world.step()
        for action in world.history:
            if isinstance(action, EnsureRevision | ScaleRevision):
                sizes[action.revision] = action.replicas
            elif isinstance(action, DeleteRevision):
                sizes.pop(action.revision, None)
            assert sum(sizes.values()) <= 4, world.history
            if stable == world.status.stable_revision and stable in sizes:
                assert sizes[stable] >= 1, world.history
        assert describes(world.spec.strategy, *world.route)
