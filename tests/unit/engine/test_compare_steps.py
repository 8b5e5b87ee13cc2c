"""A shadow step with `compare` mirrors to the rollout's comparator, which runs exactly while a route
mirrors to it: made sure of before that route is written, removed after the step, on abort, and
never asked for by a rollout without compare."""

from __future__ import annotations

from typing import Any

from controller.analysis.readings import AnalysisSignal
from controller.api import Action, AnalysisStatus, AnalysisVerdict, ComparisonStatus
from controller.engine import SetRoute
from controller.engine.actions import EnsureComparator, RemoveComparator
from tests.unit.engine.world import World, make_spec

COMPARED: list[dict[str, Any]] = [
    {"shadow": {"percent": 20, "duration": "60s", "compare": {"format": "v2"}}},
    {"canary": {"weight": 10, "duration": "60s"}},
]


def rolled_out(steps: list[dict[str, Any]]) -> World:
    world = World(make_spec(steps))
    world.step()
    world.new_template("rev2")
    world.step()
    return world


def test_the_comparator_runs_while_the_route_mirrors_to_it() -> None:
    world = rolled_out(COMPARED)
    assert world.route == (0, 20) and world.mirrors_to_comparator and world.comparator == 0
    ensure = next(i for i, a in enumerate(world.history) if isinstance(a, EnsureComparator))
    route = next(i for i, a in enumerate(world.history) if isinstance(a, SetRoute) and a.compare)
    assert ensure < route, "the comparator is made sure of before the mirror points at it"

    world.step(61)
    assert world.route == (10, 0) and not world.mirrors_to_comparator and world.comparator is None


def test_an_abort_in_the_compared_step_removes_the_comparator() -> None:
    world = rolled_out(COMPARED)
    assert world.comparator == 0
    world.act(Action.ABORT)
    assert world.route == (0, 0) and world.comparator is None


def test_a_rollout_without_compare_never_asks_for_a_comparator() -> None:
    world = rolled_out([{"shadow": {"percent": 20, "duration": "60s"}}, {"canary": {"weight": 10, "duration": "1m"}}])
    world.step(61)
    assert world.route == (10, 0)
    assert not any(isinstance(a, EnsureComparator | RemoveComparator) for a in world.history)
    assert not any(isinstance(a, SetRoute) and a.compare for a in world.history)


def test_a_comparison_that_passed_early_ends_the_shadow_step_before_its_duration() -> None:
    steps = [{"shadow": {"percent": 20, "duration": "60s", "compare": {"format": "v2", "passWhen": "noWorse"}}},
             COMPARED[1]]
    world = rolled_out(steps)
    world.step(5)
    assert world.status.current_step == 0
    world.analysis = AnalysisSignal(AnalysisVerdict.PASS, "the comparison shows the candidate no worse",
                                    step_passed=True)
    world.step(5)
    assert world.status.current_step == 1 and world.route == (10, 0) and world.comparator is None
    world.step(5)
    assert world.status.current_step == 1, "only a compared shadow step ends on its comparison"


def test_a_comparison_that_compares_nothing_is_a_standing_condition_naming_why() -> None:
    world = rolled_out(COMPARED)
    why = "compare.paths $.label select nothing in 40 answers: no request could be compared"
    analysis = AnalysisStatus(step=0, step_started_at=world.status.step_started_at or "", last_run="x",
                              verdict=AnalysisVerdict.HOLD, comparison=ComparisonStatus(blocked=why))
    world.status = world.status.model_copy(update={"analysis": analysis})
    world.step(1)
    found = next(c for c in world.status.conditions if c.type == "ComparisonBlocked")
    assert (found.status, found.message) == ("True", why)
    assert world.reasons().count("ComparisonBlocked") == 1
    world.status = world.status.model_copy(update={"analysis": analysis.model_copy(
        update={"comparison": ComparisonStatus(pairs=10)})})
    world.step(1)
    found = next(c for c in world.status.conditions if c.type == "ComparisonBlocked")
    assert (found.status, found.reason) == ("False", "Comparing")


LABELLED: list[dict[str, Any]] = [
    {"shadow": {"percent": 20, "duration": "60s", "compare": {
        "format": "v2", "requestKey": "x-request-id", "feedback": {"tokenSecretRef": {"name": "feedback"}},
        "labels": {}}}},
    {"canary": {"weight": 10, "duration": "60s"}},
    {"canary": {"weight": 50, "duration": "60s"}},
]


def test_a_compared_step_that_takes_labels_keeps_its_comparator_unmirrored_until_the_rollout_ends() -> None:
    """Labels that arrive after the shadow step still reach its comparator, through the later steps."""
    world = rolled_out(LABELLED)
    assert world.comparator == 0 and world.mirrors_to_comparator
    world.step(61)
    assert world.status.current_step == 1 and world.route == (10, 0)
    assert not world.mirrors_to_comparator and world.comparator == 0, "kept, with the shadow step's rules"
    world.step(61)
    assert world.status.current_step == 2 and world.comparator == 0
    world.step(61)
    assert world.status.phase == "Completed" and world.comparator is None, "removed when the rollout ends"


def test_an_abort_after_the_compared_step_removes_the_kept_comparator() -> None:
    world = rolled_out(LABELLED)
    world.step(61)
    assert world.comparator == 0
    world.act(Action.ABORT)
    assert world.comparator is None
