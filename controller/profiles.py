"""Metric profiles: the built-in guardrail templates mapped onto each model server's real metric names.

`spec.analysis.profile` picks one. Every profile selects a version by the `version` label, which
Prometheus copies from the pod label the operator sets (`version: <revision>`, see the README's
relabelling); a server's own `version` label then reads `exported_version`. The model is selected
by the server's own model label where it has one (`spec.model` must be its value). What a server
does not export is None here, and admission rejects a guardrail that needs it (`unsupported`).

Sources, read for each name and label (versions as of 2026-11):
- seeds: the project's seed texts (inference_request_total, inference_request_duration_seconds,
  model_prediction_value, model_conversions_total, inference_request_queue_depth).
- vllm: vllm/v1/metrics/loggers.py (`vllm:` families, label `model_name`) and the OpenAI server's
  prometheus-fastapi-instrumentator (`http_requests_total{handler,method,status="2xx|4xx|5xx"}`);
  docs/design/metrics.md lists the V1 names (`vllm:inter_token_latency_seconds`,
  `vllm:kv_cache_usage_perc`).
- tgi: text-generation-inference docs/source/reference/metrics.md (`tgi_request_count`,
  `tgi_request_success`, `tgi_request_duration`, `tgi_request_mean_time_per_token_duration`,
  `tgi_queue_size`; no model label, no time-to-first-token histogram, no KV-cache gauge).
- sglang: python/sglang/srt/metrics/collector.py and docs/references/production_metrics.md
  (`sglang:num_requests_total`, `sglang:num_aborted_requests_total`, `sglang:e2e_request_latency_seconds`,
  `sglang:time_to_first_token_seconds`, `sglang:inter_token_latency_seconds`, `sglang:num_queue_reqs`,
  `sglang:token_usage`; label `model_name`).
- triton: docs/user_guide/metrics.md (`nv_inference_request_success`, `nv_inference_request_failure`,
  `nv_inference_pending_request_count`, labels `model`, `version`); latencies are cumulative counters
  or optional summaries, never histograms, so no latency test can run on them.
- kserve: the KServe Python server (kserve/metrics.py: `request_predict_seconds` histogram, label
  `model_name`) as installed from PyPI; it counts no failures.
- mlserver: a live MLServer 1.7.1 (`model_infer_request_success_total`, `model_infer_request_failure_total`
  {model, version}; `rest_server_request_duration_seconds` with buckets, per path, no model label).
- torchserve: docs/metrics.md, Prometheus mode (`Requests2XX`, `Requests5XX` frontend counters; latency as
  cumulative microsecond counters, no histogram).
- inference-gateway: the Gateway API Inference Extension's endpoint picker, site-src/guides/metrics.md
  (`inference_objective_request_total`, `inference_objective_request_error_total`,
  `inference_objective_request_duration_seconds`, `inference_objective_normalized_time_per_output_token_seconds`,
  labels `model_name`, `target_model_name`). Its series are the picker's, not a model server's: a
  version is the target model it was routed to (`target_model_name` = the revision).
- GPU memory, every profile: DCGM exporter's `DCGM_FI_DEV_FB_USED` and `DCGM_FI_DEV_FB_FREE` (MiB), as the
  seeds' GPUMemoryNearFull alert reads them, selected by the pods' names (`<rollout>-<revision>-...`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

VERSION_LABEL = "version"
# Every built-in guardrail template, in the API's order (api.GuardrailTemplate lists the same).
GUARDRAIL_TEMPLATES = (
    "errorRate", "latencyP50", "latencyP95", "latencyP99", "timeToFirstTokenP95", "timeToFirstTokenP99",
    "interTokenLatencyP95", "interTokenLatencyP99", "endToEndLatencyP95", "endToEndLatencyP99",
    "queueDepth", "kvCacheUsage", "tokensPerSecond", "gpuMemoryUsage", "predictionPSI",
)


def promql_string(text: str) -> str:
    """A string as the inside of a PromQL double-quoted label value: a user's string can end no
    matcher and start no other (PromQL strings escape as Go's)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class Series:
    """One metric family, with the matchers every query adds to it."""

    name: str
    match: str = ""  # extra label matchers, e.g. 'path=~".*/infer"'


@dataclass(frozen=True)
class Requests:
    """Requests by outcome, from whichever two of total, errors and successes the server counts."""

    total: Series | None = None
    errors: Series | None = None
    successes: Series | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    model_label: str | None  # the server's model label, None when it has none
    requests: Requests
    latency: Series | None = None  # request latency histogram, seconds
    time_to_first_token: Series | None = None
    inter_token_latency: Series | None = None
    end_to_end: Series | None = None  # LLM end-to-end latency; the request latency elsewhere
    queue_depth: Series | None = None  # gauge: requests waiting
    kv_cache_usage: Series | None = None  # gauge: fraction of the KV cache in use
    predictions: Series | None = None  # histogram of the model's outputs (drift)
    conversions: Series | None = None  # counter of conversions (the abTest's `conversion`)
    version_label: str = VERSION_LABEL
    # Guardrail templates whose series are per request but not per model: they need no model label.
    unlabelled: frozenset[str] = field(default_factory=frozenset)
    # Where `requests` and `latency` come from a gateway's metrics instead (`analysis.gatewayProfile`).
    gateway: GatewayProfile | None = None


# A gateway's series name their backend in labels of the gateway's own; each query makes these two of
# them (label_replace), so that one answer groups by backend for the whole fleet.
GATEWAY_ARM_LABELS = ("arm_namespace", "arm_backend")
# The templates a gateway profile measures; the rest stay the server's.
GATEWAY_TEMPLATES = frozenset({"requests", "latency"})


@dataclass(frozen=True)
class Backend:
    """Where a gateway sent requests: a Service of a rollout (`service:<name>`), or the copies one of
    its routes mirrored (`mirror:<route>`)."""

    namespace: str
    name: str
    mirror: bool = False

    @property
    def key(self) -> str:
        return f"{'mirror' if self.mirror else 'service'}:{self.name}"


@dataclass(frozen=True)
class GatewayProfile:
    """What a gateway measures of every request it proxies, per backend, whatever the model server:
    Flagger's idea (request success and duration from the mesh). `arms` wraps an expression of its
    series in label_replace()s that add GATEWAY_ARM_LABELS; `every` and `one` are the matchers of
    every backend's series and of one backend's."""

    name: str
    requests: Requests
    latency: Series
    latency_seconds_per_unit: float  # the histogram's unit, in seconds (Envoy and Istio count ms)
    arms: str  # "{}" stands for the wrapped expression
    every: str
    one: Callable[[Backend], str]
    # Whether mirrored copies are counted apart from the live requests to the same Service.
    mirrors_apart: bool


def _regex(text: str) -> str:
    """A name as a literal inside a PromQL regex matcher's string (RE2 metacharacters escaped)."""
    return promql_string(re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text))


def _envoy_one(backend: Backend) -> str:
    namespace, name = _regex(backend.namespace), _regex(backend.name)
    if backend.mirror:
        return f'envoy_cluster_name=~"httproute/{namespace}/{name}/rule/[0-9]+-mirror-[0-9]+"'
    return f'envoy_cluster_name=~"service/{namespace}/{name}/.+"'


def _istio_one(backend: Backend) -> str:
    return (f'destination_service_namespace="{promql_string(backend.namespace)}",'
            f'destination_service_name="{promql_string(backend.name)}"')


GATEWAYS: dict[str, GatewayProfile] = {gateway.name: gateway for gateway in (
    # Envoy's cluster stats (/stats/prometheus), as Envoy Gateway names its clusters with mergeBackends:
    # `service/<ns>/<service>/<port>[/<protocol>]` for a backend, `httproute/<ns>/<route>/rule/<i>-mirror-<j>`
    # for a rule's mirror. Without mergeBackends a rule's backends share one cluster and cannot be told apart.
    GatewayProfile(
        "envoy",
        Requests(total=Series("envoy_cluster_upstream_rq_total"),
                 errors=Series("envoy_cluster_upstream_rq_xx", 'envoy_response_code_class="5"')),
        latency=Series("envoy_cluster_upstream_rq_time"),
        latency_seconds_per_unit=0.001,
        arms=('label_replace(label_replace(label_replace({}, '
              '"arm_namespace", "$2", "envoy_cluster_name", "(service|httproute)/([^/]+)/.*"), '
              '"arm_backend", "service:$1", "envoy_cluster_name", "service/[^/]+/([^/]+)/.*"), '
              '"arm_backend", "mirror:$1", "envoy_cluster_name", "httproute/[^/]+/([^/]+)/rule/[0-9]+-mirror-[0-9]+")'),
        every='envoy_cluster_name=~"service/.+|httproute/.+/rule/[0-9]+-mirror-[0-9]+"',
        one=_envoy_one,
        mirrors_apart=True,
    ),
    # Istio's standard metrics, reported by the destination's sidecar (Flagger's request-success-rate
    # and request-duration read the same): a mirrored copy reaches the candidate's Service as a request.
    GatewayProfile(
        "istio",
        Requests(total=Series("istio_requests_total", 'reporter="destination"'),
                 errors=Series("istio_requests_total", 'reporter="destination",response_code=~"5.."')),
        latency=Series("istio_request_duration_milliseconds", 'reporter="destination"'),
        latency_seconds_per_unit=0.001,
        arms=('label_replace(label_replace({}, "arm_namespace", "$1", "destination_service_namespace", "(.*)"), '
              '"arm_backend", "service:$1", "destination_service_name", "(.*)")'),
        every='destination_service_name!=""',
        one=_istio_one,
        mirrors_apart=False,
    ),
)}


_SEEDS_REQUESTS = Series("inference_request_total")

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (
    Profile(
        "seeds", "model",
        Requests(total=_SEEDS_REQUESTS, errors=Series("inference_request_total", 'status="error"')),
        latency=Series("inference_request_duration_seconds"),
        end_to_end=Series("inference_request_duration_seconds"),
        queue_depth=Series("inference_request_queue_depth"),
        predictions=Series("model_prediction_value"),
        conversions=Series("model_conversions_total"),
    ),
    Profile(
        "vllm", "model_name",
        Requests(total=Series("http_requests_total", 'handler=~"/v1/.*"'),
                 errors=Series("http_requests_total", 'handler=~"/v1/.*",status="5xx"')),
        latency=Series("vllm:e2e_request_latency_seconds"),
        time_to_first_token=Series("vllm:time_to_first_token_seconds"),
        inter_token_latency=Series("vllm:inter_token_latency_seconds"),
        end_to_end=Series("vllm:e2e_request_latency_seconds"),
        queue_depth=Series("vllm:num_requests_waiting"),
        kv_cache_usage=Series("vllm:kv_cache_usage_perc"),
        unlabelled=frozenset({"requests"}),  # the HTTP layer's counters carry no model name
    ),
    Profile(
        "tgi", None,
        Requests(total=Series("tgi_request_count"), successes=Series("tgi_request_success")),
        latency=Series("tgi_request_duration"),
        inter_token_latency=Series("tgi_request_mean_time_per_token_duration"),
        end_to_end=Series("tgi_request_duration"),
        queue_depth=Series("tgi_queue_size"),
    ),
    Profile(
        "sglang", "model_name",
        Requests(total=Series("sglang:num_requests_total"), errors=Series("sglang:num_aborted_requests_total")),
        latency=Series("sglang:e2e_request_latency_seconds"),
        time_to_first_token=Series("sglang:time_to_first_token_seconds"),
        inter_token_latency=Series("sglang:inter_token_latency_seconds"),
        end_to_end=Series("sglang:e2e_request_latency_seconds"),
        queue_depth=Series("sglang:num_queue_reqs"),
        kv_cache_usage=Series("sglang:token_usage"),
    ),
    Profile(
        "triton", "model",
        Requests(errors=Series("nv_inference_request_failure"), successes=Series("nv_inference_request_success")),
        queue_depth=Series("nv_inference_pending_request_count"),
    ),
    Profile(
        "kserve", "model_name",
        Requests(),
        latency=Series("request_predict_seconds"),
        end_to_end=Series("request_predict_seconds"),
    ),
    Profile(
        "mlserver", "model",
        Requests(errors=Series("model_infer_request_failure_total"),
                 successes=Series("model_infer_request_success_total")),
        latency=Series("rest_server_request_duration_seconds", 'path=~".*/infer"'),
        end_to_end=Series("rest_server_request_duration_seconds", 'path=~".*/infer"'),
        unlabelled=frozenset({"latency"}),  # starlette-exporter's histogram has a path, no model
    ),
    Profile(
        "torchserve", None,
        Requests(errors=Series("Requests5XX"), successes=Series("Requests2XX")),
    ),
    Profile(
        "inference-gateway", "model_name",
        Requests(total=Series("inference_objective_request_total"),
                 errors=Series("inference_objective_request_error_total")),
        latency=Series("inference_objective_request_duration_seconds"),
        inter_token_latency=Series("inference_objective_normalized_time_per_output_token_seconds"),
        end_to_end=Series("inference_objective_request_duration_seconds"),
        version_label="target_model_name",
    ),
)}

# Histogram templates: (the profile's field, the quantile).
HISTOGRAM_TEMPLATES = {
    "latencyP50": ("latency", 0.50), "latencyP95": ("latency", 0.95), "latencyP99": ("latency", 0.99),
    "timeToFirstTokenP95": ("time_to_first_token", 0.95), "timeToFirstTokenP99": ("time_to_first_token", 0.99),
    "interTokenLatencyP95": ("inter_token_latency", 0.95), "interTokenLatencyP99": ("inter_token_latency", 0.99),
    "endToEndLatencyP95": ("end_to_end", 0.95), "endToEndLatencyP99": ("end_to_end", 0.99),
}
# Gauges and rates, checked against bounds: the profile's field they read ("" for DCGM, every profile's).
GAUGE_TEMPLATES = {
    "queueDepth": "queue_depth", "kvCacheUsage": "kv_cache_usage", "tokensPerSecond": "inter_token_latency",
    "gpuMemoryUsage": "",
}


def profile(name: str | None, gateway: str | None = None) -> Profile:
    """A server's profile; with a gateway, its requests and request latency are the gateway's."""
    server = PROFILES[name or "seeds"]
    if gateway is None:
        return server
    chosen = GATEWAYS[gateway]
    return replace(server, requests=chosen.requests, latency=chosen.latency, gateway=chosen)


def needs(template: str) -> str | None:
    """The profile field a guardrail template reads (None: it reads no server metric)."""
    if template == "errorRate":
        return "requests"
    if template in HISTOGRAM_TEMPLATES:
        return HISTOGRAM_TEMPLATES[template][0]
    if template == "predictionPSI":
        return "predictions"
    return GAUGE_TEMPLATES.get(template) or None


def _has(chosen: Profile, part: str) -> bool:
    if part == "requests":
        counted = [chosen.requests.total, chosen.requests.errors, chosen.requests.successes]
        return sum(series is not None for series in counted) >= 2
    return getattr(chosen, part) is not None


def unsupported(name: str, gateway: str | None = None) -> list[str]:
    """The guardrail templates a profile (with a gateway's, if any) cannot measure, in the API's order."""
    chosen = profile(name, gateway)
    return [t for t in GUARDRAIL_TEMPLATES if (part := needs(t)) is not None and not _has(chosen, part)]


def why_unsupported(name: str, gateway: str | None = None) -> str:
    missing = unsupported(name, gateway)
    measured = f"analysis.profile {name}" + (f" with gatewayProfile {gateway}" if gateway else "")
    return (f"{measured} exports nothing for guardrail templates {', '.join(missing)}: "
            "use a query guardrail on what the server does export") if missing else ""
