"""Each rollout's series follow its status: what the status stops holding disappears, and a deleted
rollout leaves nothing behind."""

from __future__ import annotations

from prometheus_client import REGISTRY

from controller import api, metrics

KEY = ("ml", "scorer")


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": KEY[0], "name": KEY[1], **labels})


def _status(**analysis: object) -> api.ModelRolloutStatus:
    return api.ModelRolloutStatus.model_validate({
        "phase": "Progressing", "currentStep": 2, "canaryWeight": 20, "stepEndsAt": "2026-11-24T03:00:00Z",
        "analysis": {"step": 2, "stepStartedAt": "2026-11-24T02:50:00Z", "lastRun": "2026-11-24T02:55:00Z",
                     "verdict": "Error", "durationMs": 250.0, **analysis},
    })


def test_the_analysis_is_exported_and_what_goes_away_is_removed() -> None:
    guardrail = {"outcome": "Passed", "value": 0.011, "stable": 0.01, "evidence": 1.5, "evidenceThreshold": 3.7}
    ab = {"metric": "conversion", "samples": 400, "samplesNeeded": 1000}
    metrics.export_rollout(KEY, _status(guardrails={"errors": guardrail}, abTest=ab))
    assert _value("modelrollout_canary_weight") == 20
    assert _value("modelrollout_step") == 2
    assert _value("modelrollout_step_ends_timestamp_seconds") == 1795489200.0  # 2026-11-24T03:00:00Z
    assert _value("modelrollout_analysis_verdict", verdict="Error") == 1
    assert _value("modelrollout_analysis_verdict", verdict="Pass") == 0
    assert _value("modelrollout_analysis_duration_seconds") == 0.25
    assert _value("modelrollout_analysis_last_look_timestamp_seconds") == 1795488900.0  # its lastRun, 02:55
    assert _value("modelrollout_guardrail_value", guardrail="errors", arm="candidate") == 0.011
    assert _value("modelrollout_guardrail_value", guardrail="errors", arm="stable") == 0.01
    assert _value("modelrollout_guardrail_evidence", guardrail="errors") == 1.5
    assert _value("modelrollout_guardrail_evidence_threshold", guardrail="errors") == 3.7
    assert (_value("modelrollout_ab_samples"), _value("modelrollout_ab_samples_needed")) == (400, 1000)

    metrics.export_rollout(KEY, _status())  # the guardrail and the abTest are gone from the status
    assert _value("modelrollout_guardrail_value", guardrail="errors", arm="candidate") is None
    assert _value("modelrollout_ab_samples") is None
    assert _value("modelrollout_analysis_verdict", verdict="Error") == 1

    metrics.forget_rollout(KEY)
    for name in ("modelrollout_canary_weight", "modelrollout_step", "modelrollout_step_ends_timestamp_seconds",
                 "modelrollout_analysis_duration_seconds"):
        assert _value(name) is None
    assert _value("modelrollout_phase", phase="Progressing") is None
