"""Analysis runs against a fake provider: breaches, errors, no data, drift, A/B verdicts, SRM."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from controller.analysis.evaluate import Context, evaluate
from controller.analysis.provider import MetricError
from controller.api import ModelRolloutSpec
from tests.unit.engine.world import make_spec

PRED_EDGES = ["0.25", "0.5", "0.75", "1.0", "+Inf"]


@dataclass
class Arm:
    requests: float = 10_000
    errors: float = 10
    p99: float = 0.08
    conversions: float = 1_000
    predictions: list[float] = field(default_factory=lambda: [2500, 5000, 7500, 10000, 10000])


class FakeProvider:
    """Answers the built-in templates from per-version numbers; it parses only what it must."""

    def __init__(self, arms: dict[str, Arm], down: bool = False) -> None:
        self.arms, self.down, self.queries = arms, down, 0

    def _arm(self, query: str) -> Arm | None:
        version = re.search(r'version="([^"]+)"', query)
        return self.arms.get(version.group(1)) if version else None

    def scalar(self, query: str) -> float | None:
        self.queries += 1
        if self.down:
            raise MetricError("prometheus query failed: connection refused")
        arm = self._arm(query)
        if arm is None:
            return None
        if query.startswith("histogram_quantile(0.99"):
            return arm.p99
        if query.startswith("(sum(increase(inference_request_total"):
            return arm.errors / arm.requests if arm.requests else None
        if "model_conversions_total" in query:
            return arm.conversions
        if 'status="error"' in query:
            return arm.errors
        if 'status="ok"' in query:
            return arm.requests - arm.errors
        return arm.requests

    def by_label(self, query: str, label: str) -> dict[str, float]:
        if self.down:
            raise MetricError("prometheus query failed: connection refused")
        arm = self._arm(query)
        return dict(zip(PRED_EDGES, arm.predictions, strict=True)) if arm else {}


def _spec(step: dict[str, Any], guardrails: list[dict[str, Any]], **analysis: Any) -> ModelRolloutSpec:
    base = make_spec([step]).model_dump(by_alias=True, exclude_none=True)
    base["analysis"] = {"interval": "2s", "window": "30s", "guardrails": guardrails, **analysis}
    return ModelRolloutSpec.model_validate(base)


def _ctx(kind: str = "canary", weight: int = 20, elapsed: float = 60) -> Context:
    return Context(model="scorer", namespace="ns", stable="s1", candidate="c1", step_index=0, step_kind=kind,
                   step_elapsed_seconds=elapsed, weight=weight, now="2026-11-23T12:00:00Z")


CANARY = {"canary": {"weight": 20, "duration": "10m"}}
ERRORS = {"name": "error-rate", "template": "errorRate", "max": 0.01, "relativeToStable": 2}


def test_healthy_candidate_passes() -> None:
    result = evaluate(_spec(CANARY, [ERRORS]), FakeProvider({"s1": Arm(), "c1": Arm()}), _ctx(), {})
    assert result.signal.verdict == "pass"
    assert result.state["guardrails"]["error-rate"]["verdict"] == "Successful"


def test_error_rate_breach_rolls_back_after_the_failure_limit() -> None:
    spec = _spec(CANARY, [{**ERRORS, "failureLimit": 1}])
    provider = FakeProvider({"s1": Arm(), "c1": Arm(errors=2_000)})
    first = evaluate(spec, provider, _ctx(), {})
    assert first.signal.verdict == "pass", "one breach is tolerated with failureLimit 1"
    assert first.state["guardrails"]["error-rate"]["consecutiveFailures"] == 1
    second = evaluate(spec, provider, _ctx(), first.state)
    assert second.signal.verdict == "fail"
    assert "error-rate" in second.signal.reason
    assert second.decisions[0].verdict == "breach: rollback"


def test_an_incident_both_models_share_is_not_the_candidates_fault() -> None:
    spec = _spec(CANARY, [{"name": "error-rate", "template": "errorRate", "max": 0.01}])
    provider = FakeProvider({"s1": Arm(errors=2_000), "c1": Arm(errors=2_000)})
    result = evaluate(spec, provider, _ctx(), {})
    assert result.signal.verdict == "pass"
    assert "not significantly worse" in result.state["guardrails"]["error-rate"]["reason"]


def test_relative_latency_breach() -> None:
    spec = _spec(CANARY, [{"name": "p99", "template": "latencyP99", "relativeToStable": 1.2}])
    result = evaluate(spec, FakeProvider({"s1": Arm(p99=0.1), "c1": Arm(p99=0.14)}), _ctx(), {})
    assert result.signal.verdict == "fail"
    assert "1.2 x stable" in result.signal.reason


def test_prometheus_outage_holds_then_errors_and_never_passes() -> None:
    spec = _spec(CANARY, [ERRORS], errorLimit=3)
    provider = FakeProvider({}, down=True)
    state: dict[str, Any] = {}
    verdicts = []
    for _ in range(4):
        result = evaluate(spec, provider, _ctx(), state)
        state = result.state
        verdicts.append(result.signal.verdict)
    assert verdicts == ["hold", "hold", "error", "error"]
    assert "connection refused" in result.signal.reason


def test_no_data_is_not_a_pass() -> None:
    result = evaluate(_spec(CANARY, [ERRORS]), FakeProvider({"s1": Arm()}), _ctx(), {})
    assert result.signal.verdict == "hold"
    assert result.state["guardrails"]["error-rate"]["verdict"] == "Inconclusive"


def test_prediction_drift_holds_the_shadow_step_but_does_not_fail_it() -> None:
    shadow = {"shadow": {"percent": 100, "duration": "10m"}}
    drift = {"name": "drift", "template": "predictionPSI", "max": 0.2, "during": ["shadow"]}
    shifted = Arm(predictions=[100, 500, 2000, 10000, 10000])
    result = evaluate(_spec(shadow, [drift]), FakeProvider({"s1": Arm(), "c1": shifted}), _ctx("shadow", 0), {})
    assert result.signal.verdict == "hold"
    assert "drift" in result.signal.reason
    same = evaluate(_spec(shadow, [drift]), FakeProvider({"s1": Arm(), "c1": Arm()}), _ctx("shadow", 0), {})
    assert same.signal.verdict == "pass"


def test_shadow_comparison_is_recorded_without_a_drift_guardrail() -> None:
    shadow = {"shadow": {"percent": 100, "duration": "10m"}}
    result = evaluate(_spec(shadow, []), FakeProvider({"s1": Arm(), "c1": Arm()}), _ctx("shadow", 0), {})
    assert result.state["shadow"]["psi"] == 0.0


AB = {"abTest": {"weight": 50, "maxDuration": "1h", "metric": "conversion", "minimumDetectableEffect": 0.01}}


def test_ab_better_candidate_and_the_samples_needed() -> None:
    provider = FakeProvider({"s1": Arm(requests=20_000, errors=0, conversions=2_000),
                             "c1": Arm(requests=20_000, errors=0, conversions=2_600)})
    result = evaluate(_spec(AB, []), provider, _ctx("abTest", 50), {})
    assert result.signal.ab_verdict == "candidate_better"
    ab = result.state["abTest"]
    assert ab["samplesNeeded"] > 10_000 and 0 < ab["progress"] <= 1
    assert ab["pValue"] <= 0.05 and ab["ciLow"] > 0
    assert result.decisions[-1].test == "mSPRT two-proportion"


def test_ab_worse_and_inconclusive() -> None:
    worse = FakeProvider({"s1": Arm(requests=20_000, errors=0, conversions=2_600),
                          "c1": Arm(requests=20_000, errors=0, conversions=2_000)})
    assert evaluate(_spec(AB, []), worse, _ctx("abTest", 50), {}).signal.ab_verdict == "candidate_worse"
    few = FakeProvider({"s1": Arm(requests=200, errors=0, conversions=20),
                        "c1": Arm(requests=200, errors=0, conversions=22)})
    assert evaluate(_spec(AB, []), few, _ctx("abTest", 50), {}).signal.ab_verdict == "inconclusive"


def test_sample_ratio_mismatch_halts() -> None:
    skewed = FakeProvider({"s1": Arm(requests=14_000, errors=0, conversions=1_400),
                           "c1": Arm(requests=6_000, errors=0, conversions=600)})
    result = evaluate(_spec(AB, []), skewed, _ctx("abTest", 50), {})
    assert result.signal.verdict == "halt"
    assert "sample ratio mismatch" in result.signal.reason


def test_guardrail_window_never_reaches_before_the_step() -> None:
    provider = FakeProvider({"s1": Arm(), "c1": Arm(errors=2_000)})
    just_started = evaluate(_spec(CANARY, [ERRORS]), provider, _ctx(elapsed=0.4), {})
    assert just_started.signal.verdict == "hold", "no evidence yet is not a breach, and not a pass"
    assert provider.queries == 0
    later = evaluate(_spec(CANARY, [ERRORS]), provider, _ctx(elapsed=5), {})
    assert later.state["guardrails"]["error-rate"]["verdict"] == "Failed"
