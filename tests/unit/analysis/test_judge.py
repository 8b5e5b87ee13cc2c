"""The judge, look by look, on measurements of counters that grow: breaches, errors, no data, drift,
A/B verdicts, sample-ratio halts, and counts no test can crash on.

Each look is planned (`readings.needs`) and answered reading by reading from per-version counters,
with no PromQL: a reading the judge consults but the plan missed fails the test (KeyError)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis.budget import step_budget
from controller.analysis.judge import judge
from controller.analysis.readings import (
    Buckets,
    Conversions,
    ErrorRate,
    Look,
    Measurements,
    MetricError,
    Outcomes,
    Quantile,
    Query,
    Reading,
    RequestCounts,
    Value,
    needs,
)
from controller.api import AnalysisStatus, AnalysisVerdict, ModelRolloutSpec, ModelRolloutStatus, Verdict
from tests.unit.engine.world import make_spec

PRED_EDGES = [0.25, 0.5, 0.75, 1.0, math.inf]
LATENCY_EDGES = [0.05, 0.1, 0.15, 0.2, 0.3, 0.5, math.inf]


@dataclass
class Arm:
    """One version's counters, and the windowed values a PromQL window would give."""

    requests: float = 0.0
    errors: float = 0.0
    conversions: float = 0.0
    # Requests at or under each latency edge (cumulative, like Prometheus buckets).
    latency: list[float] = field(default_factory=lambda: [0.0] * len(LATENCY_EDGES))
    p99: float | None = 0.08
    # The last serve's (requests, conversions): what an increase() over one look returns.
    last: tuple[float, float] = (0.0, 0.0)
    predictions: list[float] = field(default_factory=lambda: [2500, 5000, 7500, 10000, 10000])

    def serve(self, requests: float, errors: float = 0.0, conversions: float = 0.0,
              slow_share: float = 0.01) -> None:
        """Requests with a p99 near 0.15 s (1% above it) unless slow_share says otherwise."""
        self.last = (requests, conversions)
        self.requests += requests
        self.errors += errors
        self.conversions += conversions
        fast = requests * (1 - slow_share)
        shares = [0.5, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0]  # of the fast ones, by edge; the slow ones land past 0.15
        for i, share in enumerate(shares):
            slow_by_edge = requests * slow_share * (0.0 if LATENCY_EDGES[i] <= 0.15 else
                                                    (0.5 if LATENCY_EDGES[i] <= 0.3 else 1.0))
            self.latency[i] += fast * share + slow_by_edge

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


class FakePrometheus:
    """Answers each planned reading from per-version counters; `down` fails every reading."""

    def __init__(self, arms: dict[str, Arm], down: bool = False) -> None:
        self.arms, self.down = arms, down

    def measure(self, planned: frozenset[Reading]) -> Measurements:
        return Measurements({reading: self._answer(reading) for reading in planned})

    def _answer(self, reading: Reading) -> Value | MetricError:
        if self.down:
            return MetricError("prometheus query failed: connection refused")
        arm = self.arms.get(getattr(reading, "version", ""))
        if isinstance(reading, RequestCounts):
            return Outcomes(arm.requests - arm.errors, arm.errors) if arm else Outcomes()
        if isinstance(reading, Buckets):
            if arm is None:
                return {}
            counts = arm.latency if reading.series == "latency" else arm.predictions
            edges = LATENCY_EDGES if reading.series == "latency" else PRED_EDGES
            return dict(zip(edges, counts, strict=True))
        if arm is None:
            return None
        if isinstance(reading, Quantile):
            return arm.p99
        if isinstance(reading, ErrorRate):
            return arm.error_rate
        if isinstance(reading, Conversions):
            return arm.conversions
        assert isinstance(reading, Query), reading
        clicks = "clicks" in reading.text
        if "{{window}}" in reading.text:
            assert reading.window == "10s", "{{window}} is the time since the last look"
            return arm.last[1] if clicks else arm.last[0]
        return arm.conversions if clicks else arm.requests


def _spec(step: dict[str, Any], guardrails: list[dict[str, Any]], **analysis: Any) -> ModelRolloutSpec:
    base = make_spec([{"pause": {}}]).model_dump(by_alias=True, exclude_none=True)
    base["strategy"]["steps"] = [step]
    base["analysis"] = {"prometheus": {"address": "http://prometheus.test:9090"}, "interval": "10s", "window": "1m",
                        "guardrails": guardrails, **analysis}
    return ModelRolloutSpec.model_validate(base)


CANARY = {"canary": {"weight": 20, "duration": "1h"}}
ERRORS = {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.01}
P99 = {"name": "p99", "template": "latencyP99", "relativeToStable": 1.2}
AB = {"abTest": {"weight": 50, "maxDuration": "1h", "metric": "conversion", "minimumDetectableEffect": 0.02}}


class Run:
    """Looks of one step, 10 s apart, carrying the analysis state as the runner does."""

    def __init__(self, spec: ModelRolloutSpec, prometheus: FakePrometheus, kind: str = "canary", weight: int = 20,
                 expected_share: float | None = None) -> None:
        self.spec, self.prometheus, self.kind, self.weight = spec, prometheus, kind, weight
        self.expected_share = expected_share
        self.state: AnalysisStatus | None = None
        self.elapsed = 0.0

    def until(self, looks: int, stable: dict[str, float], candidate: dict[str, float], done: Any) -> Any:
        """Serve this traffic to each arm and look, at most `looks` times or until `done(result)`."""
        for _ in range(looks):
            self.prometheus.arms["s1"].serve(**stable)
            self.prometheus.arms["c1"].serve(**candidate)
            result = self.look()
            if done(result):
                break
        return result

    def look(self) -> Any:
        look = Look(stable="s1", candidate="c1", step_index=0, step_kind=self.kind,
                    step_started_at="2026-11-23T12:00:00Z", step_elapsed_seconds=self.elapsed, weight=self.weight,
                    now=f"2026-11-23T12:{int(self.elapsed) // 60:02d}:{int(self.elapsed) % 60:02d}Z",
                    interval_seconds=10, step_seconds=3600, expected_share=self.expected_share)
        assert self.spec.analysis is not None
        measured = self.prometheus.measure(needs(self.spec, look, self.state))
        result = judge(self.spec, step_budget(self.spec.analysis, look), look, self.state, measured)
        # The state goes through JSON, as status does: no infinities, nothing untyped.
        dumped = json.loads(json.dumps(result.state.model_dump(mode="json", by_alias=True), allow_nan=False))
        self.state = AnalysisStatus.model_validate(dumped)
        self.elapsed += 10
        return result


def test_healthy_candidate_passes_look_after_look() -> None:
    stable, candidate = Arm(), Arm()
    run = Run(_spec(CANARY, [ERRORS]), FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    first = run.look()
    assert first.signal.verdict == AnalysisVerdict.HOLD, "a first look counts nothing yet: it does not pass"
    assert first.state.guardrails["error-rate"].reason == "counting from this look"
    for _ in range(30):
        stable.serve(800, errors=4)
        candidate.serve(200, errors=1)
        result = run.look()
        assert result.signal.verdict == AnalysisVerdict.PASS, result.signal.reason
    guardrail = result.state.guardrails["error-rate"]
    assert guardrail.outcome == "Passed" and guardrail.trials == [24_000, 6_000]
    assert guardrail.evidence is not None and guardrail.evidence < guardrail.evidence_threshold


def test_an_error_regression_rolls_back_and_says_which_guardrail() -> None:
    stable, candidate = Arm(), Arm()
    run = Run(_spec(CANARY, [ERRORS, P99]), FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    run.look()
    result = run.until(3, {"requests": 800, "errors": 4}, {"requests": 200, "errors": 20},
                       lambda r: r.signal.verdict == AnalysisVerdict.FAIL)
    assert result.signal.verdict == AnalysisVerdict.FAIL, "a 10x regression at 1,000 requests a look, in 3 looks"
    assert result.state.decided_by == "error-rate"
    assert result.decisions[0].verdict == "breach: rollback"
    assert result.state.guardrails["error-rate"].alpha == 0.025, "two statistical guardrails split alpha"


def test_an_incident_both_models_share_is_not_the_candidates_fault() -> None:
    stable, candidate = Arm(), Arm()
    run = Run(_spec(CANARY, [ERRORS]), FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    run.look()
    for _ in range(30):
        stable.serve(800, errors=160)
        candidate.serve(200, errors=40)
        assert run.look().signal.verdict == AnalysisVerdict.PASS


def test_a_worse_candidate_within_ignore_below_is_not_rolled_back() -> None:
    stable, candidate = Arm(), Arm()
    run = Run(_spec(CANARY, [{**ERRORS, "ignoreBelow": 0.5}]), FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    run.look()
    for _ in range(10):
        stable.serve(800, errors=4)
        candidate.serve(200, errors=20)
        result = run.look()
    assert result.signal.verdict == AnalysisVerdict.PASS
    assert "within ignoreBelow 0.5" in result.state.guardrails["error-rate"].reason


def test_max_is_a_ceiling_even_where_the_stable_is_as_bad() -> None:
    """A user reads `max` as a maximum: above it the guardrail breaches by itself, after failureLimit
    breaches in a row, although the test sees no difference from the stable."""
    stable, candidate = Arm(), Arm()
    run = Run(_spec(CANARY, [{"name": "error-rate", "template": "errorRate", "max": 0.05, "failureLimit": 1}]),
              FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    run.look()
    verdicts = []
    for _ in range(3):
        stable.serve(800, errors=80)
        candidate.serve(200, errors=20)
        verdicts.append(run.look())
    assert verdicts[0].signal.verdict == AnalysisVerdict.PASS, "one breach is within failureLimit 1"
    assert verdicts[1].signal.verdict == AnalysisVerdict.FAIL, verdicts[1].signal.reason
    assert "> max 0.05 for 2 look(s) in a row" in verdicts[1].signal.reason


def test_a_latency_regression_is_a_test_on_slow_requests() -> None:
    stable, candidate = Arm(), Arm()
    stable.serve(5000)
    run = Run(_spec(CANARY, [P99]), FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    run.look()
    result = run.until(30, {"requests": 800}, {"requests": 200, "slow_share": 0.2},
                       lambda r: r.signal.verdict == AnalysisVerdict.FAIL)
    assert result.signal.verdict == AnalysisVerdict.FAIL, result.signal.reason
    # The stable's 1% tail starts past 0.15 s; 1.2x that is the next bucket bound, 0.2 s.
    assert result.state.guardrails["p99"].slow_above == [0.15, 0.2]
    assert "slow requests" in result.signal.reason


def test_prometheus_outage_holds_then_errors_and_never_passes() -> None:
    spec = _spec(CANARY, [ERRORS], errorLimit=3)
    run = Run(spec, FakePrometheus({}, down=True))
    run.elapsed = 30
    verdicts = [run.look().signal.verdict for _ in range(4)]
    assert verdicts == ["Hold", "Hold", "Error", "Error"]
    assert run.state is not None and "connection refused" in run.state.reason


def test_an_outage_loses_no_counts_and_a_counter_reset_skips_one_interval() -> None:
    stable, candidate = Arm(), Arm()
    prometheus = FakePrometheus({"s1": stable, "c1": candidate})
    run = Run(_spec(CANARY, [ERRORS]), prometheus)
    run.elapsed = 30
    run.look()
    stable.serve(800, errors=4)
    candidate.serve(200, errors=1)
    prometheus.down = True
    assert run.look().signal.verdict == AnalysisVerdict.HOLD
    prometheus.down = False
    stable.serve(800, errors=4)
    candidate.serve(200, errors=1)
    run.look()
    assert run.state is not None and run.state.guardrails["error-rate"].trials == [1600, 400]
    candidate.requests, candidate.errors = 10, 0  # the candidate's pod restarted
    result = run.look()
    assert result.state.guardrails["error-rate"].outcome == "NoData"
    assert "reset" in result.state.guardrails["error-rate"].reason


def test_an_interval_stays_open_until_both_arms_have_been_scraped() -> None:
    """Prometheus scrapes each pod at its own phase: a look that sees the stable's new scrape but not the
    candidate's counts nothing yet, and the next look counts both arms over their scrapes."""
    stable, candidate = Arm(), Arm()
    run = Run(_spec(CANARY, [ERRORS]), FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    run.look()
    stable.serve(800, errors=4)  # the candidate's pod is not scraped yet
    waiting = run.look().state.guardrails["error-rate"]
    assert waiting.trials == [0.0, 0.0] and waiting.looks == 0, "one arm alone is no interval"
    stable.serve(800, errors=4)
    candidate.serve(400, errors=2)
    closed = run.look().state.guardrails["error-rate"]
    assert closed.trials == [1600.0, 400.0] and closed.events == [8.0, 2.0] and closed.looks == 1


def test_an_arm_that_counts_nothing_for_minutes_is_counted_as_such() -> None:
    stable, candidate = Arm(), Arm()
    run = Run(_spec(AB, []), FakePrometheus({"s1": stable, "c1": candidate}), "abTest", 50, expected_share=0.5)
    run.elapsed = 30
    run.look()
    verdicts = [run.until(1, {"requests": 500, "conversions": 50}, {"requests": 0}, lambda _: True).signal.verdict
                for _ in range(30)]
    assert verdicts[-1] == AnalysisVerdict.HALT, "a route that starves the candidate is a mismatch, not a scrape"
    assert all(v != AnalysisVerdict.HALT for v in verdicts[:17]), "it waits OPEN_LIMIT_SECONDS for a scrape"


def test_no_candidate_data_is_not_a_pass() -> None:
    run = Run(_spec(CANARY, [ERRORS]), FakePrometheus({"s1": Arm(requests=100)}))
    run.elapsed = 30
    run.look()
    result = run.look()
    assert result.signal.verdict == AnalysisVerdict.HOLD
    assert result.state.guardrails["error-rate"].outcome == "NoData"


def test_a_gateway_with_no_stats_for_an_arm_says_so_and_never_reads_zero_errors() -> None:
    class Gateway(FakePrometheus):
        """Envoy's counters: every arm it has seen carries a scrape time; the candidate's backend is missing."""

        def _answer(self, reading: Reading) -> Value | MetricError:
            answer = super()._answer(reading)
            if isinstance(reading, RequestCounts) and reading.version in self.arms:
                assert isinstance(answer, Outcomes)
                return Outcomes(answer.ok, answer.error, sampled_at=1.0)
            return answer

    run = Run(_spec(CANARY, [ERRORS], gatewayProfile="envoy", profile="kserve"), Gateway({"s1": Arm(requests=100)}))
    run.elapsed = 30
    run.look()
    result = run.look()
    status = result.state.guardrails["error-rate"]
    assert result.signal.verdict == AnalysisVerdict.HOLD and status.outcome == "Error", status
    assert "no request counts for the candidate (c1)" in (status.reason or "")


def test_prediction_drift_holds_the_shadow_step_but_does_not_fail_it() -> None:
    shadow = {"shadow": {"percent": 100, "duration": "10m"}}
    drift = {"name": "drift", "template": "predictionPSI", "max": 0.2, "during": ["shadow"]}
    shifted = Arm(predictions=[100, 500, 2000, 10000, 10000])
    run = Run(_spec(shadow, [drift]), FakePrometheus({"s1": Arm(), "c1": shifted}), "shadow", 0)
    run.elapsed = 60
    result = run.look()
    assert result.signal.verdict == AnalysisVerdict.HOLD and "drift" in result.signal.reason
    same = Run(_spec(shadow, [drift]), FakePrometheus({"s1": Arm(), "c1": Arm()}), "shadow", 0)
    same.elapsed = 60
    assert same.look().signal.verdict == AnalysisVerdict.PASS


def test_a_psi_over_its_bound_on_a_few_predictions_is_no_data_not_a_breach() -> None:
    shadow = {"shadow": {"percent": 100, "duration": "10m"}}
    drift = {"name": "drift", "template": "predictionPSI", "max": 0.5, "during": ["shadow"]}
    # Six predictions an arm, two buckets apart: PSI near 4, well within what chance gives six draws.
    few = Run(_spec(shadow, [drift]), FakePrometheus({"s1": Arm(predictions=[2, 4, 6, 6, 6]),
                                                      "c1": Arm(predictions=[0, 2, 2, 4, 6])}), "shadow", 0)
    few.elapsed = 60
    result = few.look()
    status = result.state.guardrails["drift"]
    assert status.outcome == "NoData" and status.value is not None and status.value > 0.5, status
    # Like any NoData, it holds the step until more predictions tell.
    assert "beyond chance" in status.reason and result.signal.verdict == AnalysisVerdict.HOLD


def test_shadow_comparison_is_recorded_without_a_drift_guardrail() -> None:
    run = Run(_spec({"shadow": {"percent": 100, "duration": "10m"}}, []),
              FakePrometheus({"s1": Arm(), "c1": Arm()}), "shadow", 0)
    run.elapsed = 60
    shadow = run.look().state.shadow
    assert shadow is not None and shadow.psi == 0.0


def test_a_shadow_step_on_a_server_without_predictions_shows_no_comparison() -> None:
    run = Run(_spec({"shadow": {"percent": 100, "duration": "10m"}}, [], profile="mlserver"),
              FakePrometheus({"s1": Arm(), "c1": Arm()}), "shadow", 0)
    run.elapsed = 60
    result = run.look()
    assert result.state.shadow is None and result.signal.verdict == AnalysisVerdict.PASS


def _ab_run(stable_rate: float, candidate_rate: float, looks: int, step: dict[str, Any] = AB,
            requests: float = 1000) -> tuple[Run, Any]:
    stable, candidate = Arm(), Arm()
    run = Run(_spec(step, []), FakePrometheus({"s1": stable, "c1": candidate}), "abTest", 50)
    run.look()
    result = run.until(looks, {"requests": requests, "conversions": requests * stable_rate},
                       {"requests": requests, "conversions": requests * candidate_rate},
                       lambda r: r.signal.ab_verdict not in (None, Verdict.INCONCLUSIVE))
    return run, result


def test_ab_better_candidate_with_its_design_and_samples_needed() -> None:
    _, result = _ab_run(0.10, 0.13, 60)
    assert result.signal.ab_verdict == Verdict.CANDIDATE_BETTER
    ab = result.state.ab_test
    assert ab is not None and ab.counted == "successes" and ab.baseline is not None
    assert abs(ab.baseline - 0.115) < 0.01, "the design sample pools both arms"
    assert ab.samples_needed is not None and ab.fixed_horizon_samples is not None
    assert ab.samples_needed_p80 is not None and ab.samples_needed_p80 > ab.samples_needed
    assert 0 < ab.progress <= 1 and ab.effect is not None and ab.effect > 0.2
    assert result.decisions[-1].verdict == "CandidateBetter"
    decision = result.decisions[-1]
    assert decision.p_value is not None and decision.p_value <= 0.025, "better is tested at alpha / 2"
    assert result.state.decided_by == "abTest"


def test_ab_worse_and_no_difference() -> None:
    assert _ab_run(0.13, 0.10, 60)[1].signal.ab_verdict == Verdict.CANDIDATE_WORSE
    step = {"abTest": {**AB["abTest"], "minimumDetectableEffect": 0.05}}
    _, same = _ab_run(0.10, 0.10, 200, step)
    assert same.signal.ab_verdict == Verdict.NO_DIFFERENCE


def test_a_relative_mde_is_read_against_the_baseline() -> None:
    absolute = _ab_run(0.10, 0.10, 1)[0].state
    relative = _ab_run(0.10, 0.10, 1, {"abTest": {**AB["abTest"], "effect": "relative"}})[0].state
    assert absolute is not None and absolute.ab_test is not None and absolute.ab_test.bounds is not None
    assert relative is not None and relative.ab_test is not None and relative.ab_test.bounds is not None
    # 0.02 absolute on ~10% is a 20% change of the rate; 0.02 relative is 2% of it.
    assert absolute.ab_test.bounds[1] > 8 * relative.ab_test.bounds[1]


def test_custom_metric_queries_count_either_totals_or_their_own_window() -> None:
    for successes, trials in (('sum(clicks_total{version="{{version}}"})', 'sum(views_total{version="{{version}}"})'),
                              ('sum(increase(clicks_total{version="{{version}}"}[{{window}}]))',
                               'sum(increase(views_total{version="{{version}}"}[{{window}}]))')):
        spec = _spec({"abTest": {**AB["abTest"], "metric": "clicks"}}, [],
                     metrics=[{"name": "clicks", "successes": successes, "trials": trials}])
        stable, candidate = Arm(), Arm()
        run = Run(spec, FakePrometheus({"s1": stable, "c1": candidate}), "abTest", 50)
        run.look()
        result = run.until(60, {"requests": 1000, "conversions": 100}, {"requests": 1000, "conversions": 130},
                           lambda r: r.signal.ab_verdict == Verdict.CANDIDATE_BETTER)
        assert result.signal.ab_verdict == Verdict.CANDIDATE_BETTER, successes
        assert result.state.ab_test is not None and result.state.ab_test.stable_rate == pytest.approx(0.1)


def test_a_success_rate_near_one_counts_the_failures() -> None:
    step = {"abTest": {**AB["abTest"], "metric": "success", "minimumDetectableEffect": 0.005}}
    stable, candidate = Arm(), Arm()
    run = Run(_spec(step, []), FakePrometheus({"s1": stable, "c1": candidate}), "abTest", 50)
    run.look()
    result = run.until(40, {"requests": 1000, "errors": 2}, {"requests": 1000, "errors": 20},
                       lambda r: r.signal.ab_verdict == Verdict.CANDIDATE_WORSE)
    assert result.state.ab_test is not None and result.state.ab_test.counted == "failures"
    assert result.signal.ab_verdict == Verdict.CANDIDATE_WORSE


def test_a_sample_ratio_mismatch_halts_and_stays_halted() -> None:
    stable, candidate = Arm(), Arm()
    run = Run(_spec(AB, []), FakePrometheus({"s1": stable, "c1": candidate}), "abTest", 50, expected_share=0.5)
    halted = []
    for _ in range(20):
        stable.serve(700, conversions=70)
        candidate.serve(300, conversions=30)
        halted.append(run.look().signal.verdict == AnalysisVerdict.HALT)
    assert not halted[0], "no check while the new split settles"
    assert halted[-1] and run.state is not None and run.state.decided_by == "sampleRatio"
    assert "sample ratio mismatch" in run.state.reason


def test_errors_on_one_side_do_not_look_like_a_sample_ratio_mismatch() -> None:
    stable, candidate = Arm(), Arm()
    run = Run(_spec(AB, []), FakePrometheus({"s1": stable, "c1": candidate}), "abTest", 50, expected_share=0.5)
    for _ in range(60):
        stable.serve(500, conversions=50)
        candidate.serve(500, errors=100, conversions=40)
        assert run.look().signal.verdict != AnalysisVerdict.HALT


def test_a_candidate_without_series_is_a_mismatch_even_where_scrape_times_are_read() -> None:
    """A labelled counter appears only with its first request: a candidate the route starves has no
    series, so no scrape time, and that must not stop the check."""
    stable, candidate = Arm(), Arm()
    prometheus = FakePrometheus({"s1": stable, "c1": candidate})
    answer = prometheus._answer

    def timed(reading: Reading) -> Value | MetricError:
        found = answer(reading)
        if isinstance(reading, RequestCounts) and reading.version == "s1" and isinstance(found, Outcomes):
            return Outcomes(found.ok, found.error, sampled_at=1_000.0 + run.elapsed)
        return found

    prometheus._answer = timed  # type: ignore[method-assign]
    run = Run(_spec(AB, []), prometheus, "abTest", 50, expected_share=0.5)
    run.elapsed = 30
    run.look()
    verdicts = [run.until(1, {"requests": 500, "conversions": 50}, {"requests": 0}, lambda _: True).signal.verdict
                for _ in range(30)]
    assert verdicts[-1] == AnalysisVerdict.HALT


def test_an_analysis_from_an_older_operator_starts_afresh() -> None:
    status = ModelRolloutStatus.model_validate({"analysis": {"verdict": "fail", "step": 0, "guardrails": {}}})
    assert status.analysis is None


counts = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**7).map(float),
                   st.sampled_from([0.0, 1.0, 0.5]))


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.tuples(counts, counts, counts, counts, counts, counts), min_size=1, max_size=6),
       metric=st.sampled_from(["conversion", "success"]))
def test_no_count_crashes_the_analysis(values: list[tuple[float, ...]], metric: str) -> None:
    """Zero trials, successes above trials, NaN, counters going backwards, rates of exactly 0 and 1:
    every look ends in a signal, and its state is storable JSON."""
    stable, candidate = Arm(), Arm()
    step = {"abTest": {**AB["abTest"], "metric": metric}}
    run = Run(_spec(step, [ERRORS, P99]), FakePrometheus({"s1": stable, "c1": candidate}), "abTest", 50,
              expected_share=0.5)
    run.elapsed = 60
    for sr, se, sc, cr, ce, cc in values:
        stable.requests, stable.errors, stable.conversions = sr, se, sc
        candidate.requests, candidate.errors, candidate.conversions = cr, ce, cc
        stable.latency = [sr * f for f in (0.5, 0.8, 0.99, 1, 1, 1, 1)]
        candidate.latency = [cr * f for f in (0.5, 0.8, 0.99, 1, 1, 1, 1)]
        result = run.look()
        assert result.signal.verdict in AnalysisVerdict


def test_the_oldest_counts_of_the_step_are_kept_for_the_scrape_warning() -> None:
    """Each look's age is the look's time less the mean time of an arm's last scrapes, the older arm; the step
    keeps its largest (the engine's ScrapesSlow condition reads it)."""
    spec = _spec(CANARY, [ERRORS])
    assert spec.analysis is not None
    prometheus = FakePrometheus({"s1": Arm(), "c1": Arm()})
    epoch = 1_795_000_000.0
    now = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state: AnalysisStatus | None = None
    for stable_age, candidate_age, oldest in ((5.0, 20.0, 20.0), (3.0, 4.0, 20.0), (30.0, 1.0, 30.0)):
        look = Look(stable="s1", candidate="c1", step_index=0, step_kind="canary", step_started_at=now,
                    step_elapsed_seconds=30, weight=20, now=now, interval_seconds=10, step_seconds=3600)
        values = dict(prometheus.measure(needs(spec, look, state)).values)
        values[RequestCounts("s1")] = Outcomes(100, 0, sampled_at=epoch - stable_age)
        values[RequestCounts("c1")] = Outcomes(20, 0, sampled_at=epoch - candidate_age)
        state = judge(spec, step_budget(spec.analysis, look), look, state, Measurements(values)).state
        assert state.oldest_scrape_seconds == pytest.approx(oldest)


EPOCH = datetime(2026, 11, 23, 12, tzinfo=UTC).timestamp()  # Run.look's clock at elapsed 0


def _scraped(prometheus: FakePrometheus, run_of: Any, stamp: Any) -> None:
    """Give each arm's request counts the scrape time `stamp(version, elapsed)`."""
    answer = prometheus._answer

    def timed(reading: Reading) -> Value | MetricError:
        found = answer(reading)
        if isinstance(reading, RequestCounts) and isinstance(found, Outcomes):
            return Outcomes(found.ok, found.error, sampled_at=stamp(reading.version, run_of().elapsed))
        return found

    prometheus._answer = timed  # type: ignore[method-assign]


def test_scrape_times_that_go_backwards_are_left_out_and_never_halt() -> None:
    """The stable's scrape time jumps 160 s back for three looks, its counts still rising (the series
    changed under the query): those intervals are left out of the sample-ratio test, the step holds
    saying how old the counts are, and then goes on. Counted with those spans it halted."""
    stable, candidate = Arm(), Arm()
    prometheus = FakePrometheus({"s1": stable, "c1": candidate})
    run = Run(_spec(AB, []), prometheus, "abTest", 50, expected_share=0.5)
    _scraped(prometheus, lambda: run, lambda version, elapsed: EPOCH + elapsed - (
        100 + elapsed if version == "s1" and 60 <= elapsed < 90 else 3))
    run.elapsed = 40
    verdicts, reasons = [], []
    for _ in range(12):
        stable.serve(500, conversions=50)
        candidate.serve(500, conversions=50)
        result = run.look()
        verdicts.append(result.signal.verdict)
        reasons.append(result.signal.reason)
    assert AnalysisVerdict.HALT not in verdicts
    assert verdicts[2:5] == [AnalysisVerdict.HOLD] * 3 and "last scraped 160 s ago" in reasons[2]
    assert verdicts[-1] == AnalysisVerdict.PASS


def test_a_scrape_gap_longer_than_the_window_holds_with_the_reason_and_never_passes() -> None:
    stable, candidate = Arm(), Arm()
    prometheus = FakePrometheus({"s1": stable, "c1": candidate})
    run = Run(_spec(CANARY, [ERRORS]), prometheus)
    scraped = {"at": EPOCH}
    _scraped(prometheus, lambda: run, lambda version, elapsed: scraped["at"])
    run.elapsed = 30
    for look in range(20):
        gap = 5 <= look < 15
        if not gap:
            stable.serve(800, errors=4)
            candidate.serve(200, errors=1)
            scraped["at"] = EPOCH + run.elapsed - 2
        result = run.look()
        age = EPOCH + run.elapsed - 10 - scraped["at"]
        if age > 60:
            assert result.signal.verdict == AnalysisVerdict.HOLD, (look, result.signal)
            assert f"the stable's counts were last scraped {age:.0f} s ago, longer than analysis.window" \
                in result.signal.reason
        elif look > 0:
            assert result.signal.verdict == AnalysisVerdict.PASS, (look, result.signal)
    assert result.state.oldest_scrape_seconds is not None and result.state.oldest_scrape_seconds > 60


def test_a_pod_that_disappears_mid_step_is_left_out_like_a_reset() -> None:
    """Half the stable's series vanish: its totals fall. That interval is skipped, and counting goes on."""
    stable, candidate = Arm(), Arm()
    run = Run(_spec(CANARY, [ERRORS, P99]), FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    trials = []
    for look in range(8):
        stable.serve(800, errors=4)
        candidate.serve(200, errors=1)
        if look == 4:
            stable.requests, stable.errors = stable.requests / 2, stable.errors / 2
            stable.latency = [count / 2 for count in stable.latency]
        result = run.look()
        assert result.signal.verdict in (AnalysisVerdict.PASS, AnalysisVerdict.HOLD), result.signal
        trials.append(result.state.guardrails["error-rate"].trials)
    assert trials[4] == trials[3], "the interval the pod vanished in is left out"
    assert trials[-1][0] > trials[4][0], "and the next ones count"


def test_a_candidate_whose_counters_restart_is_counted_again_at_the_next_look() -> None:
    """The candidate's pod is replaced (a retry after a rollback): its totals start again from zero while
    the stable's go on. That interval is skipped at once, not held open for OPEN_LIMIT_SECONDS while the
    candidate's new total stays below its old one (which stalled a retried canary in "counting")."""
    stable, candidate = Arm(), Arm()
    run = Run(_spec(CANARY, [ERRORS]), FakePrometheus({"s1": stable, "c1": candidate}))
    run.elapsed = 30
    run.look()
    for _ in range(5):
        stable.serve(800, errors=4)
        candidate.serve(200, errors=1)
        run.look()
    candidate.requests, candidate.errors = 0.0, 0.0
    reasons = []
    for _ in range(3):
        stable.serve(800, errors=4)
        candidate.serve(200, errors=1)
        result = run.look()
        reasons.append(result.state.guardrails["error-rate"].reason)
    assert "went backwards" in reasons[0]
    assert result.signal.verdict == AnalysisVerdict.PASS and result.state.guardrails["error-rate"].trials == [
        7 * 800, 7 * 200], "five intervals before the reset, and the two after it"
