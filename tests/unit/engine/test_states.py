"""The state table: the engine moves only along its rows, and what a reader is shown is the table."""

from __future__ import annotations

import re
from pathlib import Path

from controller.api import Action, RolloutState
from controller.engine.states import IN_FLIGHT, TRANSITIONS, Event, diagram, table
from tests.unit.engine.world import World, deployed, make_spec

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_diagram_is_the_table() -> None:
    shown = re.search(r"```mermaid\n(stateDiagram-v2\n.*?)```", README.read_text(), re.DOTALL)
    assert shown is not None, "the README shows the state diagram"
    assert shown.group(1) == diagram(), "stale: paste `modelrollout states --mermaid` into the README"


def test_every_state_is_reached_and_every_manual_action_has_a_row() -> None:
    reached = {target for row in TRANSITIONS for target in row.targets} | {RolloutState.NEW}
    assert reached == set(RolloutState)
    assert {row.event.value for row in TRANSITIONS} >= {action.value for action in Action}
    assert len(table()) == len(TRANSITIONS)


def test_a_rollout_records_its_state_as_it_moves() -> None:
    world = World(make_spec([{"canary": {"weight": 20, "duration": "1m"}}, {"pause": {}}]))
    world.step()
    assert world.status.state == RolloutState.STABLE
    deployed(world)
    world.revision = "rev2"
    world.step()
    assert world.status.state == RolloutState.RUNNING
    world.step(61)
    assert world.status.state == RolloutState.AT_PAUSE_STEP
    world.act(Action.RESUME)
    assert world.status.state == RolloutState.WARM, "past the last step the promotion completes at once"
    world.act(Action.UNDO)
    assert world.status.state == RolloutState.ROLLED_BACK


def test_an_action_no_row_holds_is_ignored_and_told() -> None:
    world = deployed(World(make_spec([{"pause": {}}])))
    world.act(Action.UNDO)
    assert world.status.state == RolloutState.STABLE
    assert world.events[-1].reason == "ActionIgnored" and "settled" in world.events[-1].message
    assert all(row.source in IN_FLIGHT for row in TRANSITIONS if row.event == Event.ABORT)
