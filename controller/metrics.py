"""The operator's own /metrics: API calls by verb and resource, reconciles, and each rollout's traffic."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from kubernetes import client
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from controller import api

API_REQUESTS = Counter(
    "modelrollout_api_requests_total", "Kubernetes API requests made by the reconciler", ["verb", "resource"]
)
RECONCILES = Counter("modelrollout_reconciles_total", "Reconciles run", ["outcome"])
RECONCILE_SECONDS = Histogram(
    "modelrollout_reconcile_duration_seconds", "Wall time of one reconcile",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CANARY_WEIGHT = Gauge("modelrollout_canary_weight", "Percent of live traffic on the candidate",
                      ["namespace", "name"])
MIRROR_PERCENT = Gauge("modelrollout_mirror_percent", "Percent of traffic mirrored to the candidate",
                       ["namespace", "name"])
PHASE = Gauge("modelrollout_phase", "1 for the rollout's current phase", ["namespace", "name", "phase"])

def export_rollout(key: tuple[str, str], status: api.ModelRolloutStatus) -> None:
    namespace, name = key
    CANARY_WEIGHT.labels(namespace, name).set(status.canary_weight)
    MIRROR_PERCENT.labels(namespace, name).set(status.mirror_percent)
    for phase in api.Phase:
        PHASE.labels(namespace, name, phase.value).set(1 if status.phase == phase else 0)


def forget_rollout(key: tuple[str, str]) -> None:
    """A deleted rollout leaves no series behind."""
    namespace, name = key
    for gauge in (CANARY_WEIGHT, MIRROR_PERCENT):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    for phase in api.Phase:
        with contextlib.suppress(KeyError):
            PHASE.remove(namespace, name, phase.value)


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
