"""Which transitions are told, through the real engine, and what the two formats carry."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from controller import api
from controller.analysis.readings import AnalysisSignal
from controller.api import AnalysisVerdict
from controller.notifications.messages import Notification, notifications, slack_body, webhook_body
from tests.unit.engine.world import World, deployed, make_spec

BODY = {"metadata": {"namespace": "ml", "name": "scorer", "uid": "u-1"}}
RECEIVERS = [
    {"name": "ops", "type": "webhook", "secretRef": {"name": "hooks"}},
    {"name": "chat", "type": "slack", "secretRef": {"name": "slack"}, "events": ["RolledBack", "Completed"]},
]


def _spec(steps: list[dict[str, Any]], receivers: list[dict[str, Any]] = RECEIVERS) -> api.ModelRolloutSpec:
    spec = make_spec(steps)
    return api.ModelRolloutSpec.model_validate(
        {**spec.model_dump(by_alias=True, exclude_none=True), "notifications": {"receivers": receivers}})


class Told:
    """A World whose every reconcile is passed through `notifications`, as the reconciler does."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.sent: list[Notification] = []

    def step(self, seconds: float = 0.0) -> None:
        world = self.world
        world.now += timedelta(seconds=seconds)
        for _ in range(10):
            before = world.status
            transition = world.reconcile_once()
            self.sent += notifications(BODY, world.spec, before, transition.status, transition.actions, world.now)
            if transition.wake_at is None or transition.wake_at > world.now:
                return

    def events(self) -> list[str]:
        return [n.event.value for n in self.sent]


def _started(steps: list[dict[str, Any]]) -> Told:
    world = deployed(World(_spec(steps)))
    told = Told(world)
    world.new_template("rev2")
    told.step()
    return told


def test_a_rollout_tells_started_steps_the_pause_and_completion_in_order() -> None:
    told = _started([{"canary": {"weight": 20, "duration": "30s"}}, {"pause": {}},
                     {"canary": {"weight": 50, "duration": "30s"}}])
    told.step(31)
    told.step(3600)
    told.world.status = told.world.status.model_copy(update={"pending_action": api.Action.PROMOTE})
    told.step()
    told.step(31)
    assert told.events() == ["Started", "StepCompleted", "Paused", "StepCompleted", "StepCompleted", "Completed"]
    completed = told.sent[-1]
    assert [r.name for r in completed.receivers] == ["ops", "chat"]
    assert [r.name for r in told.sent[0].receivers] == ["ops"], "chat asked for RolledBack and Completed only"
    assert completed.facts["stableRevision"] == "rev2" and completed.facts["phase"] == "Completed"


def test_a_rollback_carries_the_verdict_and_the_guardrail_numbers() -> None:
    told = _started([{"canary": {"weight": 20, "duration": "10m"}}])
    world = told.world
    guardrail = api.GuardrailStatus(outcome=api.GuardrailOutcome.BREACHED, value=0.08, stable=0.002, evidence=4.1,
                                    evidence_threshold=3.69)
    world.status = world.status.model_copy(update={"analysis": api.AnalysisStatus(
        step=0, step_started_at=world.status.step_started_at or "", last_run="2026-11-23T12:00:10Z",
        verdict=AnalysisVerdict.FAIL, reason="error-rate breached", decided_by="error-rate",
        guardrails={"error-rate": guardrail})})
    world.analysis = AnalysisSignal(AnalysisVerdict.FAIL, "error-rate breached")
    told.step(10)
    rolled_back = told.sent[-1]
    assert rolled_back.event == api.NotificationEvent.ROLLED_BACK
    assert "error-rate breached" in rolled_back.message

    payload = webhook_body(rolled_back)
    assert payload["event"] == "RolledBack" and payload["rollout"] == {"namespace": "ml", "name": "scorer",
                                                                       "uid": "u-1"}
    assert payload["phase"] == "RolledBack" and payload["weight"] == 0
    assert payload["analysis"]["guardrails"]["error-rate"] == {
        "outcome": "Breached", "value": 0.08, "stable": 0.002, "evidence": 4.1, "evidenceThreshold": 3.69}
    json.dumps(payload)  # a JSON body as it is

    slack = slack_body(rolled_back)
    assert slack["text"].startswith("RolledBack: ml/scorer")
    details = slack["attachments"][0]["blocks"][1]["text"]["text"]
    assert "error-rate: candidate 0.08 vs stable 0.002 (Breached, evidence 4.10/3.69)" in details


def test_a_halt_is_told_as_analysis_halted_not_as_a_pause() -> None:
    told = _started([{"canary": {"weight": 20, "duration": "10m"}}])
    told.world.analysis = AnalysisSignal(AnalysisVerdict.HALT, "sample ratio mismatch")
    told.step(10)
    assert told.events()[-1:] == ["AnalysisHalted"]


def test_undo_is_told() -> None:
    told = _started([{"canary": {"weight": 20, "duration": "30s"}}])
    told.step(31)
    told.world.status = told.world.status.model_copy(update={"pending_action": api.Action.UNDO})
    told.step()
    assert told.events()[-1] == "Undone"


def test_without_notifications_nothing_is_told() -> None:
    world = deployed(World(make_spec([{"canary": {"weight": 20, "duration": "30s"}}])))
    world.new_template("rev2")
    before = world.status
    transition = world.reconcile_once()
    assert notifications(BODY, world.spec, before, transition.status, transition.actions, world.now) == []
