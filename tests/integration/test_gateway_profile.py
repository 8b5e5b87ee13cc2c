"""The `envoy` gateway profile read by the operator's own measuring port, from a real Envoy.

Envoy Gateway serves a hand-written HTTPRoute (all live traffic to the stable, half of it mirrored to
the candidate); a real Prometheus scrapes that Envoy's stats. The measuring port then reads each arm
by the backend it was reached through: the stable by its Service's cluster, the candidate in a shadow
look by the route's mirror cluster. The figures must be Envoy's own counters, and a candidate whose
server fails every request must read as all errors although its server exports no error count here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from devkit.sandbox.cluster import SandboxState
from devkit.sandbox.prometheus import start_prometheus
from e2e.envoy import EnvoyRoute
from e2e.fleet import ModelFleet
from e2e.loadgen import LoadGenerator
from kubernetes import client

from controller import api
from controller.analysis.readings import Buckets, Look, Quantile, RequestCounts, needs
from controller.engine.plan import AnalysisPlan, Plan
from controller.measure.measure import AnalysisIO, DefaultPrometheus, Measurer, RolloutRef
from controller.measure.prometheus import PrometheusPool
from tests.integration.rollout_helpers import wait_until
from tests.integration.test_e2e_tooling import (  # noqa: F401 (fixtures)
    GATEWAY_API,
    PORT,
    ROLLOUT,
    fleet,
    scorer_workloads,
)
from tests.integration.test_profiles_live import _pool

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]


def mirrored_route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": ROLLOUT},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [
            {"backendRefs": [{"name": f"{ROLLOUT}-stable", "port": PORT, "weight": 100},
                             {"name": f"{ROLLOUT}-candidate", "port": PORT, "weight": 0}],
             "filters": [{"type": "RequestMirror", "requestMirror": {
                 "backendRef": {"name": f"{ROLLOUT}-candidate", "port": PORT}, "percent": 50}}]}]},
    }


@pytest.fixture
def pool() -> Iterator[PrometheusPool]:
    with _pool() as made:
        yield made


@contextmanager
def served(api_client: client.ApiClient, namespace: str, tmp_path: Path) -> Iterator[tuple[EnvoyRoute, str]]:
    """The mirrored route served by Envoy Gateway, and a Prometheus scraping that Envoy: (gateway, its URL)."""
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        *GATEWAY_API[:2], namespace, GATEWAY_API[2], mirrored_route())
    with EnvoyRoute(api_client, namespace, tmp_path / "envoy") as gateway:
        prometheus = start_prometheus(tmp_path / "prometheus", [gateway.scrape_config()], scrape_interval="1s")
        try:
            wait_until(lambda: httpx.post(f"{gateway.url}/predict", json={}, timeout=5).status_code == 200, 120,
                       "the route served")
            yield gateway, prometheus.url
        finally:
            prometheus.stop()


def _look(namespace: str, prometheus_url: str, pool: PrometheusPool, weight: int, name: str = ROLLOUT) -> Any:
    spec = api.ModelRolloutSpec.model_validate({
        "model": ROLLOUT, "template": {"spec": {"containers": [{"name": "m", "image": "m:1"}]}},
        "trafficRouting": {"gatewayAPI": {"httpRoute": ROLLOUT}},
        "strategy": {"steps": [{"shadow": {"percent": 50, "duration": "10m"}}]},
        # KServe's server counts no failures: the gateway does.
        "analysis": {"profile": "kserve", "gatewayProfile": "envoy", "window": "30s", "guardrails": [
            {"name": "errors", "template": "errorRate", "ignoreBelow": 0.05},
            {"name": "p99", "template": "latencyP99", "relativeToStable": 1.2}]},
    })
    look = Look(stable="rev1", candidate="rev2", step_index=0, step_kind="shadow",
                step_started_at="2026-12-07T00:00:00Z", step_elapsed_seconds=600, weight=weight,
                now="2026-12-07T00:10:00Z")
    io = AnalysisIO(pool, lambda *_: (_ for _ in ()).throw(AssertionError("no Secret")),
                    default_prometheus=DefaultPrometheus(prometheus_url))
    measurer = Measurer(io, spec, RolloutRef(ROLLOUT, namespace, name), lambda _: None, lambda _: 0)
    readings = measurer.measure(Plan(analysis=AnalysisPlan(look, needs(spec, look, None), True, 60)))
    assert readings.analysis is not None and readings.analysis.measured is not None, readings
    return readings.analysis.measured


def _envoy_total(gateway: EnvoyRoute, prefix: str, code_class: str | None = None) -> float:
    """Straight from Envoy's stats, parsed here: requests (or one response class) of the clusters under `prefix`."""
    assert gateway.proxy is not None
    text = httpx.get(gateway.proxy.stats_url, timeout=10).text
    name = "envoy_cluster_upstream_rq_total" if code_class is None else "envoy_cluster_upstream_rq_xx"
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'envoy_cluster_name="{prefix}' in line and (
                code_class is None or f'envoy_response_code_class="{code_class}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_envoy_profile_reads_each_arm_by_the_backend_it_was_reached_through(
    api_client: client.ApiClient, envoy_gateway: SandboxState, namespace: str, tmp_path: Path, fleet: ModelFleet,  # noqa: F811
    pool: PrometheusPool,
) -> None:
    fleet.wait_for_revisions("rev1", "rev2")
    fleet.set_knobs("rev2", error_rate=1.0)  # the candidate fails every request it is sent
    with served(api_client, namespace, tmp_path) as (gateway, prometheus_url):
        # Longer than two of Envoy's stats flushes (5 s): a histogram series appears at its first flush
        # with its first counts, which rate() cannot see, so the window needs the later ones.
        LoadGenerator(gateway.url, rps=40, seed=5, max_duration_s=60).run(14)
        stable_prefix, mirror_prefix = (f"service/{namespace}/{ROLLOUT}-stable/",
                                        f"httproute/{namespace}/{ROLLOUT}/rule/0-mirror-")
        seen: list[tuple[float, float]] = []

        def settled() -> tuple[float, float] | None:
            """Envoy's counts, once two reads a poll apart agree: the load stopped, the copies landed."""
            seen.append((_envoy_total(gateway, stable_prefix), _envoy_total(gateway, mirror_prefix)))
            return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] else None

        wanted = wait_until(settled, 60, "Envoy's counters settled")

        def scraped() -> Any:
            measured = _look(namespace, prometheus_url, pool, weight=0)
            stable, candidate = measured.outcomes(RequestCounts("rev1")), measured.outcomes(RequestCounts("rev2"))
            return measured if (stable.ok + stable.error, candidate.ok + candidate.error) == wanted else None

        measured = wait_until(scraped, 60, "Prometheus holding Envoy's counts")
        stable_errors = _envoy_total(gateway, stable_prefix, "5")
    stable, candidate = measured.outcomes(RequestCounts("rev1")), measured.outcomes(RequestCounts("rev2"))
    # The stable's live requests by its Service's cluster; the shadow candidate's by the route's mirror.
    assert stable.error == stable_errors and stable.ok > 300, stable
    assert candidate.ok == 0 and candidate.error == wanted[1] > 0, candidate
    assert stable.sampled_at is not None and candidate.sampled_at is not None
    # Envoy's histogram is in milliseconds, read in seconds: the simulator answers in about 5 ms. Envoy
    # merges histograms at its stats flush (5 s), so they may trail its counters: the latency test counts
    # a histogram's requests from its own +Inf bucket, never from the counters.
    buckets = measured.buckets(Buckets("latency", "rev1"))
    assert 0 < buckets[math.inf] <= stable.ok + stable.error and min(buckets) < 0.01, buckets
    assert buckets[0.01] > 0.5 * buckets[math.inf], buckets
    p99 = measured.scalar(Quantile(0.99, "latency", "rev1", "30s"))
    assert p99 is not None and 0.0005 < p99 < 2.0, p99


def test_an_arm_the_gateway_never_saw_reads_as_no_data_not_as_zero_errors(
    api_client: client.ApiClient, envoy_gateway: SandboxState, namespace: str, tmp_path: Path, fleet: ModelFleet,  # noqa: F811
    pool: PrometheusPool,
) -> None:
    fleet.wait_for_revisions("rev1", "rev2")
    with served(api_client, namespace, tmp_path) as (_, prometheus_url):
        wait_until(lambda: _look(namespace, prometheus_url, pool, weight=0).outcomes(
            RequestCounts("rev1")).sampled_at, 60, "the stable's counts in Prometheus")
        # A rollout whose Services Envoy never had as backends: its stats are missing, not zero.
        measured = _look(namespace, prometheus_url, pool, weight=10, name="elsewhere")
    for version in ("rev1", "rev2"):
        missing = measured.outcomes(RequestCounts(version))
        assert missing.sampled_at is None, missing
