"""Metric profiles: the API's templates, what each server lacks, and the queries on its real names."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from pydantic import ValidationError

from controller import api
from controller.measure import templates
from controller.profiles import GATEWAY_ARM_LABELS, GUARDRAIL_TEMPLATES, PROFILES, Backend, profile, unsupported


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
    llama, scorer = templates.Arm("llama", "abc"), templates.Arm("scorer", "abc")
    assert templates.quantile(0.99, vllm, vllm.time_to_first_token, llama, "1m") == (  # type: ignore[arg-type]
        'histogram_quantile(0.99, sum by (le, model_name, version) (rate(vllm:time_to_first_token_seconds_bucket'
        '{model_name="llama",version="abc"}[1m])))')
    assert templates.request_totals(mlserver, scorer) == (
        'label_replace(sum by (model, version) (model_infer_request_failure_total{model="scorer",version="abc"}), '
        '"part", "errors", "__name__", ".*") or '
        'label_replace(sum by (model, version) (model_infer_request_success_total{model="scorer",version="abc"}), '
        '"part", "successes", "__name__", ".*") or '
        'label_replace(avg by (model, version) (timestamp(model_infer_request_failure_total{model="scorer",'
        'version="abc"}) or timestamp(model_infer_request_success_total{model="scorer",version="abc"})), '
        '"part", "time", "__name__", ".*")')
    assert templates.bucket_totals(mlserver, mlserver.latency, scorer) == (  # type: ignore[arg-type]
        'sum by (le, version) (rest_server_request_duration_seconds_bucket{version="abc",path=~".*/infer"})'), \
        "starlette-exporter's histogram has no model label"
    assert 'sum by (version) (tgi_request_count{version="abc"})' in templates.request_totals(tgi, scorer)
    assert 'sum by (version) (http_requests_total{version="abc",handler=~"/v1/.*",status="5xx"})' in (
        templates.request_totals(vllm, llama))
    gateway = profile("inference-gateway")
    assert 'target_model_name="abc"' in templates.error_rate(gateway, llama, "1m")


def test_the_fleet_form_groups_every_arm_and_a_rollout_finds_its_own() -> None:
    vllm = profile("vllm")
    fleet = templates.error_rate(vllm, templates.FLEET, "1m")
    assert 'version!=""' in fleet and "llama" not in fleet and "sum by (version)" in fleet
    assert templates.quantile(0.5, vllm, vllm.latency, templates.FLEET, "1m") == (  # type: ignore[arg-type]
        'histogram_quantile(0.5, sum by (le, model_name, version) (rate(vllm:e2e_request_latency_seconds_bucket'
        '{version!=""}[1m])))')
    # vLLM's HTTP counters carry no model name: its request templates name an arm by version alone.
    assert templates.grouping(vllm).key(templates.Arm("llama", "abc")) == ("abc",)
    assert templates.grouping(vllm, "latency").key(templates.Arm("llama", "abc")) == ("llama", "abc")


@pytest.mark.parametrize(("name", "totals", "outcome"), [
    ("seeds", {"total": 10.0, "errors": 2.0}, {"ok": 8.0, "error": 2.0}),
    ("seeds", {"total": 10.0}, {"ok": 10.0, "error": 0.0}),
    ("tgi", {"total": 10.0, "successes": 7.0}, {"ok": 7.0, "error": 3.0}),
    ("mlserver", {"errors": 1.0, "successes": 9.0}, {"ok": 9.0, "error": 1.0}),
    ("mlserver", {"successes": 9.0}, {"ok": 9.0, "error": 0.0}),
])
def test_outcomes_from_any_two_counters(name: str, totals: dict[str, float], outcome: dict[str, float]) -> None:
    assert templates.outcomes(profile(name), totals) == outcome


def test_a_users_string_cannot_leave_its_promql_matcher() -> None:
    from controller.measure.templates import render
    from controller.profiles import promql_string

    hostile = 'x"} or vector(1) or {a="\\'
    query = templates.conversion_total(profile("seeds"), templates.Arm(hostile, "abc"))
    assert query == ('sum by (model, version) '
                     '(model_conversions_total{model="x\\"} or vector(1) or {a=\\"\\\\",version="abc"})')
    assert render('sum(rate(x{model="{{model}}"}[{{window}}]))', hostile, "v", "ns", "5m") == (
        'sum(rate(x{model="' + promql_string(hostile) + '"}[5m]))')


def test_a_gateway_profile_measures_errors_and_latency_for_any_server() -> None:
    assert set(get_args(api.GatewayProfile)) == {"envoy", "istio"}
    assert "errorRate" in unsupported("kserve") and "errorRate" not in unsupported("kserve", "envoy")
    assert "latencyP99" in unsupported("triton") and "latencyP99" not in unsupported("triton", "istio")
    # What only the server knows stays the server's.
    assert "timeToFirstTokenP99" in unsupported("kserve", "envoy")
    assert profile("vllm", "envoy").time_to_first_token == profile("vllm").time_to_first_token
    # Admission: the same template with and without the gateway.
    unsupported_errors = "analysis.profile kserve exports nothing for guardrail templates errorRate"
    with pytest.raises(ValidationError, match=re.escape(unsupported_errors)):
        api.Analysis.model_validate(_analysis("kserve", "errorRate"))
    chosen = api.Analysis.model_validate({**_analysis("kserve", "errorRate"), "gatewayProfile": "envoy"})
    assert chosen.gateway_profile == "envoy" and chosen.errors_unwatched() is None
    assert api.Analysis.model_validate({"profile": "kserve"}).errors_unwatched() is not None
    with pytest.raises(ValidationError, match="with gatewayProfile envoy exports nothing for guardrail templates"):
        api.Analysis.model_validate({**_analysis("kserve", "timeToFirstTokenP99"), "gatewayProfile": "envoy"})


def test_envoy_arms_are_its_backends_named_from_its_cluster_names() -> None:
    envoy = profile("kserve", "envoy")
    stable = templates.Arm("scorer", "rev1", Backend("ml", "scorer-stable"))
    shadow = templates.Arm("scorer", "rev2", Backend("ml", "scorer", mirror=True))
    assert templates.grouping(envoy).labels == GATEWAY_ARM_LABELS
    assert templates.grouping(envoy).key(stable) == ("ml", "service:scorer-stable")
    assert templates.grouping(envoy, "latency").key(shadow) == ("ml", "mirror:scorer")
    fleet = templates.request_totals(envoy, templates.FLEET)
    assert 'sum by (arm_namespace, arm_backend) (label_replace(label_replace(label_replace(' \
           'envoy_cluster_upstream_rq_xx{envoy_cluster_name=~"service/.+|httproute/.+/rule/[0-9]+-mirror-[0-9]+",' \
           'envoy_response_code_class="5"}' in fleet
    assert 'envoy_cluster_name=~"service/ml/scorer-stable/.+"' in templates.error_rate(envoy, stable, "1m")
    assert 'envoy_cluster_name=~"httproute/ml/scorer/rule/[0-9]+-mirror-[0-9]+"' in (
        templates.bucket_totals(envoy, envoy.latency, shadow))  # type: ignore[arg-type]
    # Envoy counts milliseconds: a quantile is given in seconds.
    assert templates.quantile(0.99, envoy, envoy.latency, stable, "1m").startswith(  # type: ignore[arg-type]
        "0.001 * histogram_quantile(0.99, sum by (le, arm_namespace, arm_backend) (label_replace(")
    # A name cannot leave its regex: RE2 metacharacters are escaped.
    odd = templates.Arm("scorer", "v", Backend("ml", "a.b|c"))
    assert 'service/ml/a\\\\.b\\\\|c/.+' in templates.error_rate(envoy, odd, "1m")


def test_with_a_gateway_the_servers_own_histograms_and_conversions_keep_the_servers_labels() -> None:
    seeds = profile("seeds", "istio")
    arm = templates.Arm("scorer", "abc", Backend("ml", "scorer-candidate"))
    assert templates.bucket_totals(seeds, seeds.predictions, arm) == (  # type: ignore[arg-type]
        'sum by (le, model, version) (model_prediction_value_bucket{model="scorer",version="abc"})')
    assert templates.conversion_total(seeds, arm) == (
        'sum by (model, version) (model_conversions_total{model="scorer",version="abc"})')
    assert 'destination_service_name="scorer-candidate"' in templates.request_totals(seeds, arm)
    assert templates.latency_kind(seeds, seeds.end_to_end) == "server-latency"  # type: ignore[arg-type]
    assert templates.grouping(seeds, "server-latency").key(arm) == ("scorer", "abc")
