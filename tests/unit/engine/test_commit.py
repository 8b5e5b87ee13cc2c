"""The reconciler's commit: a status that changed only in evidence waits, whatever the engine re-asserts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller import api
from controller.engine import EmitEvent, SetRoute, Transition
from controller.reconciler import Behind, _commit


class _Rollout:
    """Records what the commit writes (the RolloutObject's two calls)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.body: dict[str, Any] = {"metadata": {"resourceVersion": "1"}, "status": status}
        self.written: list[dict[str, Any]] = []
        self.deferred: dict[str, Any] | None = None

    def write_status(self, status: dict[str, Any]) -> None:
        self.written.append(status)

    def patch_metadata(self, metadata: dict[str, Any]) -> None:
        raise AssertionError("no action annotation here")


def _status(looks: int, verdict: str = "Pass") -> api.ModelRolloutStatus:
    return api.ModelRolloutStatus.model_validate({
        "phase": "Progressing", "canaryWeight": 10, "analysis": {
            "step": 0, "stepStartedAt": "2026-12-07T00:00:00Z", "lastRun": f"2026-12-07T00:{looks:02d}:00Z",
            "looks": looks, "verdict": verdict, "counters": {"errors/stable/trials": 100.0 * looks}}})


def _dump(status: api.ModelRolloutStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True)


NOW = datetime(2026, 12, 7, tzinfo=UTC)
REASSERTED = [SetRoute(10, 0)]


def test_a_look_that_only_adds_evidence_is_held_though_the_route_is_reasserted() -> None:
    rollout = _Rollout(_dump(_status(3)))
    _commit(rollout, _status(3), Transition(REASSERTED, _status(4)), None, NOW)  # type: ignore[arg-type]
    assert rollout.written == [] and rollout.deferred == _dump(_status(4))


def test_news_and_the_checkpoint_are_written() -> None:
    event = [*REASSERTED, EmitEvent("Normal", api.EventReason.PROMOTED, "news")]
    rollout = _Rollout(_dump(_status(3)))
    _commit(rollout, _status(3), Transition(event, _status(4)), None, NOW)  # type: ignore[arg-type]
    assert rollout.written == [_dump(_status(4))], "an Event is news"
    rollout = _Rollout(_dump(_status(3)))
    _commit(rollout, _status(3), Transition(REASSERTED, _status(4, "Hold")), None, NOW)  # type: ignore[arg-type]
    assert len(rollout.written) == 1, "a verdict is news"
    rollout = _Rollout(_dump(_status(5)))
    behind = Behind(_dump(_status(3)), NOW - timedelta(seconds=61))
    _commit(rollout, _status(5), Transition(REASSERTED, _status(6)), behind, NOW)  # type: ignore[arg-type]
    assert len(rollout.written) == 1, "61 s behind: the checkpoint"
