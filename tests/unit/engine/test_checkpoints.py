"""Which statuses are written at once, and which wait for their checkpoint."""

from __future__ import annotations

from typing import Any

import pytest

from controller import api
from controller.engine.checkpoints import CHECKPOINT_LOOKS, CHECKPOINT_SECONDS, worth_writing


def _status(looks: int = 3, verdict: str = "Pass", value: float = 0.010, reason: str = "p99 0.21 s vs 0.20 s",
            **guardrail: Any) -> dict[str, Any]:
    """A status as the look writes it (JSON, by alias)."""
    return api.ModelRolloutStatus.model_validate({
        "phase": "Progressing", "currentStep": 1, "canaryWeight": 10,
        "analysis": {
            "step": 1, "stepStartedAt": "2026-12-07T00:00:00Z", "lastRun": f"2026-12-07T00:00:{looks:02d}Z",
            "looks": looks, "verdict": verdict, "counters": {"stable/ok": 100.0 * looks},
            "guardrails": {"errors": {"outcome": "Passed", "reason": reason, "value": value, "evidence": 0.4,
                                      "cumulative": [0.1 * looks, 0.2], "events": [looks, 2.0 * looks],
                                      **guardrail}},
        },
    }).model_dump(mode="json", by_alias=True)


def test_a_look_that_only_adds_evidence_waits() -> None:
    assert not worth_writing(_status(3), _status(4, value=0.012), behind_seconds=10)


@pytest.mark.parametrize(("new", "why"), [
    (_status(4, verdict="Hold"), "a verdict"),
    (_status(4, value=0.02), "a shown figure doubled"),
    (_status(4, reason="waiting for scrapes"), "a reason in other words"),
    (_status(4, outcome="Breached"), "an outcome"),
    (_status(3 + CHECKPOINT_LOOKS), "the checkpoint's looks"),
    (_status(1), "a new step's looks, fewer than stored"),
])
def test_what_a_reader_acts_on_is_written_at_once(new: dict[str, Any], why: str) -> None:
    assert worth_writing(_status(3), new, behind_seconds=10), why


def test_evidence_is_news_by_its_threshold_and_a_tiny_figure_is_not() -> None:
    stored = _status(3, evidenceThreshold=3.0)
    assert not worth_writing(stored, _status(4, evidenceThreshold=3.0, evidence=0.1), behind_seconds=10), \
        "evidence hovering near 0 is noise, whatever its share of itself"
    assert worth_writing(stored, _status(4, evidenceThreshold=3.0, evidence=1.2), behind_seconds=10)
    assert not worth_writing(stored, _status(4, evidenceThreshold=3.0, evidence=-1.2), behind_seconds=10), \
        "evidence falling away from the threshold waits for the checkpoint"
    assert not worth_writing(_status(3, value=0.0), _status(4, value=0.0004), behind_seconds=10)


def test_numbers_inside_a_reason_are_figures_not_news() -> None:
    assert not worth_writing(_status(3), _status(4, reason="p99 0.23 s vs 0.19 s"), behind_seconds=10)


def test_the_checkpoint_bounds_what_a_restart_can_lose() -> None:
    assert worth_writing(_status(3), _status(4), behind_seconds=CHECKPOINT_SECONDS)
    assert worth_writing(None, _status(4), behind_seconds=0)
