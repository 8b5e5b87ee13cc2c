"""Metric profiles: the API's templates, what each server lacks, and the queries on its real names."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from pydantic import ValidationError

from controller import api
from controller.measure import templates
from controller.profiles import GUARDRAIL_TEMPLATES, PROFILES, profile, unsupported


def test_the_api_and_the_profiles_list_the_same_templates_and_profiles() -> None:
    assert get_args(api.GuardrailTemplate) == GUARDRAIL_TEMPLATES
    assert set(get_args(api.Profile)) == set(PROFILES)


@pytest.mark.parametrize(("name", "missing"), [
    ("seeds", {"timeToFirstTokenP95", "timeToFirstTokenP99", "interTokenLatencyP95", "interTokenLatencyP99",
               "kvCacheUsage", "tokensPerSecond"}),
    ("vllm", {"predictionPSI"}),
    ("sglang", {"predictionPSI"}),
    ("tgi", {"timeToFirstTokenP95", "timeToFirstTokenP99", "kvCacheUsage", "predictionPSI"}),
    ("mlserver", {"timeToFirstTokenP95", "timeToFirstTokenP99", "interTokenLatencyP95", "interTokenLatencyP99",
                  "queueDepth", "kvCacheUsage", "tokensPerSecond", "predictionPSI"}),
])
def test_what_each_server_does_not_export(name: str, missing: set[str]) -> None:
    assert set(unsupported(name)) == missing
    assert "gpuMemoryUsage" not in unsupported(name), "DCGM serves every profile"


def test_latency_tests_need_a_histogram() -> None:
    for name in ("triton", "torchserve"):
        assert {"latencyP99", "timeToFirstTokenP99", "endToEndLatencyP99"} <= set(unsupported(name))
    assert "errorRate" in unsupported("kserve"), "KServe's Python server counts no failures"


def _analysis(profile_name: str, template: str) -> dict[str, object]:
    return {"profile": profile_name, "guardrails": [{"name": "g", "template": template, "max": 1.0}]}


def test_a_template_the_server_lacks_is_rejected_with_the_reason() -> None:
    reason = "analysis.profile mlserver exports nothing for guardrail templates timeToFirstTokenP95, timeToFirst"
    with pytest.raises(ValidationError, match=re.escape(reason)):
        api.Analysis.model_validate(_analysis("mlserver", "timeToFirstTokenP99"))
    assert api.Analysis.model_validate(_analysis("vllm", "timeToFirstTokenP99")).profile == "vllm"


def test_each_profile_reads_its_servers_names() -> None:
    vllm, mlserver, tgi = profile("vllm"), profile("mlserver"), profile("tgi")
    assert templates.quantile(0.99, vllm, vllm.time_to_first_token, "llama", "abc", "1m") == (  # type: ignore[arg-type]
        'histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket'
        '{model_name="llama",version="abc"}[1m])))')
    assert templates.request_total_queries(mlserver, "scorer", "abc") == {
        "errors": 'sum(model_infer_request_failure_total{model="scorer",version="abc"})',
        "successes": 'sum(model_infer_request_success_total{model="scorer",version="abc"})'}
    assert templates.bucket_totals(mlserver, mlserver.latency, "scorer", "abc") == (  # type: ignore[arg-type]
        'sum by (le) (rest_server_request_duration_seconds_bucket{version="abc",path=~".*/infer"})'), \
        "starlette-exporter's histogram has no model label"
    assert templates.request_total_queries(tgi, "m", "abc") == {
        "total": 'sum(tgi_request_count{version="abc"})', "successes": 'sum(tgi_request_success{version="abc"})'}
    assert templates.request_total_queries(vllm, "llama", "abc")["errors"] == (
        'sum(http_requests_total{version="abc",handler=~"/v1/.*",status="5xx"})')
    gateway = profile("inference-gateway")
    assert 'target_model_name="abc"' in templates.error_rate(gateway, "llama", "abc", "1m")


@pytest.mark.parametrize(("totals", "outcome"), [
    ({"total": 10.0, "errors": 2.0}, {"ok": 8.0, "error": 2.0}),
    ({"total": 10.0, "successes": 7.0}, {"ok": 7.0, "error": 3.0}),
    ({"errors": 1.0, "successes": 9.0}, {"ok": 9.0, "error": 1.0}),
    ({"errors": None, "successes": 9.0}, {"ok": 9.0, "error": 0.0}),
])
def test_outcomes_from_any_two_counters(totals: dict[str, float | None], outcome: dict[str, float]) -> None:
    assert templates.outcomes(totals) == outcome


def test_a_users_string_cannot_leave_its_promql_matcher() -> None:
    from controller.measure.templates import render
    from controller.profiles import PROFILES, Series, promql_string

    hostile = 'x"} or vector(1) or {a="\\'
    selector = PROFILES["vllm"].selector(hostile, "abc", Series("m"))
    assert selector == '{model_name="x\\"} or vector(1) or {a=\\"\\\\",version="abc"}'
    assert render('sum(rate(x{model="{{model}}"}[{{window}}]))', hostile, "v", "ns", "5m") == (
        'sum(rate(x{model="' + promql_string(hostile) + '"}[5m]))')
