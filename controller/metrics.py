"""The operator's own /metrics: API calls by verb and resource, reconciles, and each rollout's traffic,
step and analysis (guardrail values and evidence, A/B progress)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from kubernetes import client
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from controller import api
from controller.timestamps import parse_timestamp

API_REQUESTS = Counter(
    "modelrollout_api_requests_total", "Kubernetes API requests made by the reconciler", ["verb", "resource"]
)
RECONCILES = Counter("modelrollout_reconciles_total", "Reconciles run", ["outcome"])
RECONCILE_SECONDS = Histogram(
    "modelrollout_reconcile_duration_seconds", "Wall time of one reconcile",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
NOTIFICATIONS = Counter("modelrollout_notifications_total", "Notifications by receiver type and outcome",
                        ["type", "outcome"])
NOTIFICATION_SECONDS = Histogram(
    "modelrollout_notification_delivery_seconds", "From the stored transition to the receiver's 2xx answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
# Rollouts in this process's cache: every rollout it can see, or with a static shard only the shard's.
WATCHED = Gauge("modelrollout_rollouts_watched", "ModelRollouts this process watches and caches")
ROLLOUT = ["namespace", "name"]
CANARY_WEIGHT = Gauge("modelrollout_canary_weight", "Percent of live traffic on the candidate", ROLLOUT)
MIRROR_PERCENT = Gauge("modelrollout_mirror_percent", "Percent of traffic mirrored to the candidate", ROLLOUT)
PHASE = Gauge("modelrollout_phase", "1 for the rollout's current phase", [*ROLLOUT, "phase"])
STEP = Gauge("modelrollout_step", "The current step, counted from 0", ROLLOUT)
STEP_ENDS = Gauge("modelrollout_step_ends_timestamp_seconds",
                  "When the current step's duration ends (absent for a step without one)", ROLLOUT)
VERDICT = Gauge("modelrollout_analysis_verdict", "1 for the last analysis verdict of the current step",
                [*ROLLOUT, "verdict"])
LAST_LOOK = Gauge("modelrollout_analysis_last_look_timestamp_seconds",
                  "When the current step's analysis last looked (its status may be written later)", ROLLOUT)
ANALYSIS_SECONDS = Gauge("modelrollout_analysis_duration_seconds",
                         "How long the last analysis run's queries and tests took", ROLLOUT)
GUARDRAIL_VALUE = Gauge("modelrollout_guardrail_value", "A guardrail's last value, by arm (stable, candidate)",
                        [*ROLLOUT, "guardrail", "arm"])
GUARDRAIL_EVIDENCE = Gauge("modelrollout_guardrail_evidence",
                           "A statistical guardrail's evidence (log likelihood ratio) against the candidate",
                           [*ROLLOUT, "guardrail"])
GUARDRAIL_THRESHOLD = Gauge("modelrollout_guardrail_evidence_threshold",
                            "The evidence at which that guardrail rolls back", [*ROLLOUT, "guardrail"])
AB_SAMPLES = Gauge("modelrollout_ab_samples", "Trials in the smaller arm of the abTest so far", ROLLOUT)
AB_SAMPLES_NEEDED = Gauge("modelrollout_ab_samples_needed",
                          "Trials the abTest's design needs for 80% power at its MDE (median)", ROLLOUT)

Series = tuple[Gauge, tuple[str, ...]]
# Every series exported per rollout, so that what a status no longer holds (a guardrail, an
# analysis) disappears, and a deleted rollout leaves nothing behind.
_exported: dict[tuple[str, str], set[Series]] = {}


def _rollout_series(status: api.ModelRolloutStatus) -> dict[Series, float]:
    series: dict[Series, float] = {
        (CANARY_WEIGHT, ()): status.canary_weight,
        (MIRROR_PERCENT, ()): status.mirror_percent,
        (STEP, ()): status.current_step,
    }
    for phase in api.Phase:
        series[PHASE, (phase.value,)] = 1 if status.phase == phase else 0
    if status.step_ends_at is not None:
        series[STEP_ENDS, ()] = parse_timestamp(status.step_ends_at).timestamp()
    analysis = status.analysis
    if analysis is None:
        return series
    for verdict in api.AnalysisVerdict:
        series[VERDICT, (verdict.value,)] = 1 if analysis.verdict == verdict else 0
    series[LAST_LOOK, ()] = parse_timestamp(analysis.last_run).timestamp()
    if analysis.duration_ms is not None:
        series[ANALYSIS_SECONDS, ()] = analysis.duration_ms / 1000
    for name, guardrail in analysis.guardrails.items():
        for arm, value in (("candidate", guardrail.value), ("stable", guardrail.stable)):
            if value is not None:
                series[GUARDRAIL_VALUE, (name, arm)] = value
        if guardrail.evidence is not None and guardrail.evidence_threshold is not None:
            series[GUARDRAIL_EVIDENCE, (name,)] = guardrail.evidence
            series[GUARDRAIL_THRESHOLD, (name,)] = guardrail.evidence_threshold
    if analysis.ab_test is not None:
        series[AB_SAMPLES, ()] = analysis.ab_test.samples
        if analysis.ab_test.samples_needed is not None:
            series[AB_SAMPLES_NEEDED, ()] = analysis.ab_test.samples_needed
    return series


def export_rollout(key: tuple[str, str], status: api.ModelRolloutStatus) -> None:
    current = _rollout_series(status)
    for (gauge, labels), value in current.items():
        gauge.labels(*key, *labels).set(value)
    for gauge, labels in _exported.get(key, set()) - current.keys():
        with contextlib.suppress(KeyError):
            gauge.remove(*key, *labels)
    _exported[key] = set(current)


def forget_rollout(key: tuple[str, str]) -> None:
    """A deleted rollout leaves no series behind."""
    for gauge, labels in _exported.pop(key, set()):
        with contextlib.suppress(KeyError):
            gauge.remove(*key, *labels)


# /apis/group/version/namespaces/ns/<resource>/... or /api/v1/namespaces/ns/<resource>/...
_RESOURCE = re.compile(r"/(?:apis/[^/]+|api)/[^/]+(?:/namespaces/[^/]+)?/([^/?]+)")


def resource_of(url: str) -> str:
    match = _RESOURCE.search(url)
    return match.group(1) if match else "other"


def count_requests(api_client: client.ApiClient) -> client.ApiClient:
    """Count every request this client sends, by verb and resource."""
    rest = api_client.rest_client
    send: Any = rest.request

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        API_REQUESTS.labels(method.upper(), resource_of(url)).inc()
        return send(method, url, *args, **kwargs)

    rest.request = counted  # type: ignore[method-assign]
    return api_client


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")  # noqa: S104 - scraped from inside the cluster


def total_requests() -> float:
    return sum(sample.value for metric in API_REQUESTS.collect() for sample in metric.samples
               if sample.name.endswith("_total"))
