"""The e2e tooling on the real sandbox and a real Prometheus: the model-server simulator, the fleet
that runs one server process per revision, and the route-aware load generator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.fleet import ModelFleet
from e2e.harness import stop_process
from e2e.loadgen import LoadStats, RouteAwareLoadGenerator
from e2e.model_server import LATENCY_BUCKETS, PREDICTION_BUCKETS, KnobError, Knobs, ModelServer, ServerConfig
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from controller.routers import gatewayapi, istio
from controller.runtime.cache import REVISION_LABEL, ROLLOUT_LABEL
from controller.sandbox.processes import pid_alive
from controller.sandbox.prometheus import PrometheusServer, start_prometheus
from tests.integration.rollout_helpers import httproute, virtualservice, wait_for

pytestmark = pytest.mark.cluster

ROLLOUT = "scorer"
PORT = 8080
METRIC_FAMILIES = {
    # The parser names a counter's family without `_total`; its samples keep it.
    "inference_request": "counter",
    "inference_request_duration_seconds": "histogram",
    "model_prediction_value": "histogram",
    "model_conversions": "counter",
    "inference_request_queue_depth": "gauge",
}
IMAGE_KNOBS = {
    "scorer:good": Knobs(latency_ms=5, latency_jitter=0.2, error_rate=0.0, prediction_mean=0.4, conversion_rate=0.1),
    "scorer:better": Knobs(latency_ms=5, latency_jitter=0.2, error_rate=0.0, prediction_mean=0.5, conversion_rate=0.2),
}


# ---- helpers --------------------------------------------------------------------------------
@contextmanager
def server_process(directory: Path, *args: str) -> Iterator[str]:
    """`python -m e2e.model_server` as its own process; yields its URL; ended by its PID."""
    port_file = directory / "server.port"
    with (directory / "server.log").open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "e2e.model_server", "--port", "0", "--port-file", str(port_file), *args],
            cwd=directory, stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        def port() -> int | None:
            assert process.poll() is None, (directory / "server.log").read_text()
            return int(port_file.read_text()) if port_file.exists() else None
        yield f"http://127.0.0.1:{wait_for(port, 60, 'model server port file')}"
    finally:
        stop_process(process, 10)


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(exposition) for s in family.samples}


def sample(exposition: str, name: str, **labels: str) -> float:
    return samples(exposition)[(name, frozenset(labels.items()))]


def deployment(revision: str, image: str, replicas: int = 1) -> dict[str, Any]:
    """A Deployment as the operator's `deployment_manifest` names and labels it."""
    selector = {ROLLOUT_LABEL: ROLLOUT, REVISION_LABEL: revision}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{ROLLOUT}-{revision}", "labels": selector},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**selector, "model": ROLLOUT, "version": revision}},
                "spec": {"containers": [{"name": "model", "image": image}]},
            },
        },
    }


def service(role: str, revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{ROLLOUT}-{role}", "labels": {ROLLOUT_LABEL: ROLLOUT}},
        "spec": {"selector": {ROLLOUT_LABEL: ROLLOUT, REVISION_LABEL: revision},
                 "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]},
    }


def prometheus_query(server: PrometheusServer, query: str) -> dict[str, float]:
    """`sum by (version)`-style answers as {version: value}."""
    answer = httpx.get(f"{server.url}/api/v1/query", params={"query": query}, timeout=10).json()
    assert answer["status"] == "success", answer
    return {r["metric"].get("version", ""): float(r["value"][1]) for r in answer["data"]["result"]}


def answered(stats: LoadStats, revision: str) -> tuple[int, int]:
    """(requests the server surely counted, requests it may have counted: those that timed out too)."""
    surely = stats.total(revision=revision, outcome="ok") + stats.total(revision=revision, outcome="error")
    return surely, surely + stats.total(revision=revision, outcome="failed")


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def scorer_workloads(api_client: client.ApiClient, namespace: str) -> None:
    """rev1 (stable) and rev2 (candidate) Deployments and the two Services, as the operator makes them."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("rev1", "scorer:good"))  # type: ignore[arg-type]
    apps.create_namespaced_deployment(namespace, deployment("rev2", "scorer:better"))  # type: ignore[arg-type]
    core.create_namespaced_service(namespace, service("stable", "rev1"))  # type: ignore[arg-type]
    core.create_namespaced_service(namespace, service("candidate", "rev2"))  # type: ignore[arg-type]


@pytest.fixture
def fleet(api_client: client.ApiClient, namespace: str, tmp_path: Path,
          scorer_workloads: None) -> Iterator[ModelFleet]:
    with ModelFleet(api_client, namespace, ROLLOUT, IMAGE_KNOBS.__getitem__, tmp_path / "fleet", seed=7) as started:
        yield started
        pids = list(started.pids().values())
    assert not [pid for pid in pids if pid_alive(pid)], "the fleet left a model server running"
    assert json.loads(started.targets_path.read_text()) == []


@pytest.fixture
def prometheus(tmp_path: Path, fleet: ModelFleet) -> Iterator[PrometheusServer]:
    server = start_prometheus(tmp_path / "prometheus", [fleet.scrape_config()], scrape_interval="1s")
    try:
        yield server
    finally:
        server.stop()


# ---- the model server alone -----------------------------------------------------------------
def test_model_server_process_serves_measures_and_takes_knobs_at_run_time(tmp_path: Path) -> None:
    args = ["--model", "scorer", "--version", "rev1", "--latency-ms", "1", "--conversion-rate", "1.0",
            "--prediction-mean", "0.3", "--prediction-spread", "0.1", "--seed", "1"]
    with server_process(tmp_path, *args) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        predictions = []
        for index in range(60):
            answer = http.post("/predict", json={"features": [index]})
            assert answer.status_code == 200
            body = answer.json()
            assert body["model"] == "scorer" and body["version"] == "rev1"
            predictions.append(body["prediction"])
        for _ in range(15):
            assert http.post("/predict", json={}, headers={"X-Mirrored": "true"}).status_code == 200
        assert all(0.0 <= p <= 1.0 for p in predictions)
        assert abs(sum(predictions) / len(predictions) - 0.3) < 0.06

        exposition = http.get("/metrics").text
        families = {f.name: f.type for f in text_string_to_metric_families(exposition)}
        assert families == METRIC_FAMILIES  # exactly these, no `_created` series
        for literal in ("inference_request_total{", "inference_request_duration_seconds_bucket{",
                        "model_prediction_value_bucket{", "model_conversions_total{",
                        "inference_request_queue_depth{"):
            assert literal in exposition
        labels = {"model": "scorer", "version": "rev1"}
        assert sample(exposition, "inference_request_total", **labels, status="ok") == 75
        assert sample(exposition, "inference_request_total", **labels, status="error") == 0
        assert sample(exposition, "inference_request_duration_seconds_count", **labels) == 75
        assert sample(exposition, "model_prediction_value_count", **labels) == 75
        # conversion_rate 1.0: every live prediction converts, a mirrored one never does.
        assert sample(exposition, "model_conversions_total", **labels) == 60
        assert sample(exposition, "inference_request_queue_depth", model="scorer") == 0
        les = {name: sorted(float(dict(key)["le"]) for (n, key) in samples(exposition) if n == name)
               for name in ("inference_request_duration_seconds_bucket", "model_prediction_value_bucket")}
        assert les["inference_request_duration_seconds_bucket"] == [*LATENCY_BUCKETS, float("inf")]
        assert les["model_prediction_value_bucket"] == [*PREDICTION_BUCKETS, float("inf")]
        assert len(PREDICTION_BUCKETS) == 20 and PREDICTION_BUCKETS[-1] == 1.0

        # Fault injection at run time.
        changed = http.post("/knobs", json={"error_rate": 1.0})
        assert changed.status_code == 200 and changed.json()["error_rate"] == 1.0
        assert http.get("/knobs").json()["error_rate"] == 1.0
        assert [http.post("/predict", json={}).status_code for _ in range(10)] == [500] * 10
        exposition = http.get("/metrics").text
        assert sample(exposition, "inference_request_total", **labels, status="error") == 10
        assert sample(exposition, "inference_request_total", **labels, status="ok") == 75
        assert http.post("/knobs", json={"error_rate": 2}).status_code == 400
        assert http.post("/knobs", json={"no_such_knob": 1}).status_code == 400
        assert http.post("/predict", content=b"{not json").status_code == 400
        assert http.post("/knobs", json={"error_rate": 0, "latency_ms": 2}).json()["latency_ms"] == 2
        assert http.post("/predict", json={}).status_code == 200


def test_model_server_is_reproducible_with_a_seed_and_validates_knobs() -> None:
    def predictions(seed: int) -> list[float]:
        knobs = Knobs(latency_ms=0, prediction_mean=0.7, prediction_spread=0.2)
        with ModelServer(ServerConfig("scorer", "v", knobs=knobs, seed=seed)) as server, \
                httpx.Client(base_url=server.url, timeout=10) as http:
            return [http.post("/predict", json={}).json()["prediction"] for _ in range(20)]

    assert predictions(11) == predictions(11)
    assert predictions(11) != predictions(12)
    with pytest.raises(KnobError):
        Knobs(error_rate=1.5)
    with pytest.raises(KnobError):
        Knobs().updated(latency=3)
    assert Knobs(prediction_spread=0).updated(prediction_mean=0.25).prediction_mean == 0.25


# ---- fleet, load generator and Prometheus on the sandbox ------------------------------------
def test_fleet_loadgen_and_prometheus_follow_the_live_httproute(
    api_client: client.ApiClient, namespace: str, tmp_path: Path, fleet: ModelFleet, prometheus: PrometheusServer,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    args = (gatewayapi.GROUP, gatewayapi.VERSION, namespace, gatewayapi.PLURAL)
    custom.create_namespaced_custom_object(*args, httproute(ROLLOUT))
    route: dict[str, Any] = custom.get_namespaced_custom_object(*args, ROLLOUT)  # type: ignore[assignment]
    custom.replace_namespaced_custom_object(
        *args, ROLLOUT, gatewayapi.with_route(route, f"{ROLLOUT}-stable", f"{ROLLOUT}-candidate", PORT, 30, 50))

    urls = fleet.wait_for_revisions("rev1", "rev2")
    assert fleet.knobs("rev2").prediction_mean == 0.5  # knobs_for_image("scorer:better")
    targets = json.loads(fleet.targets_path.read_text())
    assert sorted(t["labels"]["revision"] for t in targets) == ["rev1", "rev2"]
    assert sorted(f"http://{t['targets'][0]}" for t in targets) == sorted(urls.values())

    loadgen = RouteAwareLoadGenerator(api_client, namespace, ("gatewayAPI", ROLLOUT), ROLLOUT, fleet,
                                      rps=50, seed=3, max_duration_s=60)
    stats = loadgen.run(6)
    assert stats.route is not None
    assert (stats.route.weight, stats.route.mirror) == (30, 50)
    assert (stats.route.stable_revision, stats.route.candidate_revision) == ("rev1", "rev2")
    assert stats.live >= 100, stats  # 50 rps for 6 s is 300; a slow machine sends fewer, never none
    assert stats.total(outcome="ok") >= 0.9 * (stats.live + stats.mirrored), stats
    assert 0.15 <= stats.candidate_share <= 0.45, stats
    assert 0.30 <= stats.mirror_share <= 0.70, stats
    assert stats.total("stable", revision="rev1") + stats.total("candidate", revision="rev2") == stats.live
    assert stats.total("mirror") == stats.total("mirror", revision="rev2")
    assert set(stats.live_by_weight) == {30}

    # Prometheus found both servers through file_sd; it ends up with every request they answered.
    query = f'sum by (version) (inference_request_total{{model="{ROLLOUT}"}})'

    def scraped_everything() -> dict[str, float] | None:
        seen = prometheus_query(prometheus, query)
        bounds = {rev: answered(stats, rev) for rev in ("rev1", "rev2")}
        ok = all(low <= seen.get(rev, -1) <= high for rev, (low, high) in bounds.items())
        return seen if ok else None

    totals = wait_for(scraped_everything, 60, "Prometheus totals matching the load generator")
    assert totals["rev1"] > 0 and totals["rev2"] > 0
    conversions = prometheus_query(prometheus, f'sum by (version) (model_conversions_total{{model="{ROLLOUT}"}})')
    assert set(conversions) == {"rev1", "rev2"}

    # Scaled to 0: the fleet stops that process and drops its target.
    pid = fleet.pids()["rev2"]
    client.AppsV1Api(api_client).patch_namespaced_deployment_scale(
        f"{ROLLOUT}-rev2", namespace, {"spec": {"replicas": 0}})
    fleet.wait_for(lambda urls: set(urls) == {"rev1"}, 60, "rev2 stopped")
    wait_for(lambda: not pid_alive(pid), 30, f"PID {pid} gone")
    assert "rev2" not in fleet.pids()
    wait_for(lambda: [t["labels"]["revision"] for t in json.loads(fleet.targets_path.read_text())] == ["rev1"],
             30, "targets.json without rev2")


def test_loadgen_follows_a_virtualservice_and_fleet_keeps_knobs_across_a_restart(
    api_client: client.ApiClient, namespace: str, fleet: ModelFleet,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    args = (istio.GROUP, istio.VERSION, namespace, istio.PLURAL)
    custom.create_namespaced_custom_object(*args, virtualservice(ROLLOUT))
    vs: dict[str, Any] = custom.get_namespaced_custom_object(*args, ROLLOUT)  # type: ignore[assignment]
    custom.replace_namespaced_custom_object(
        *args, ROLLOUT, istio.with_route(vs, f"{ROLLOUT}-stable", f"{ROLLOUT}-candidate", PORT, 100, 0))
    fleet.wait_for_revisions("rev1", "rev2")

    # Fault injection on the candidate; a crashed server comes back with the same knobs.
    assert fleet.set_knobs("rev2", error_rate=1.0).error_rate == 1.0
    old_pid = fleet.pids()["rev2"]
    os.kill(old_pid, signal.SIGKILL)  # a process the fleet started for this test
    fleet.wait_for(lambda urls: "rev2" in urls and fleet.pids().get("rev2") not in (None, old_pid), 60,
                   "rev2 restarted")
    assert fleet.restarts >= 1
    assert fleet.knobs("rev2").error_rate == 1.0

    loadgen = RouteAwareLoadGenerator(api_client, namespace, ("istio", ROLLOUT), ROLLOUT, fleet,
                                      rps=20, seed=5, max_duration_s=60)
    stats = loadgen.run(3)
    assert stats.route is not None and (stats.route.weight, stats.route.mirror) == (100, 0)
    assert stats.live > 0 and stats.total("stable") == 0 and stats.mirrored == 0, stats
    assert stats.total("candidate", "rev2", "error") >= 0.9 * stats.live, stats

    # A hard bound: max_duration_s stops the generator by itself.
    bounded = RouteAwareLoadGenerator(api_client, namespace, ("istio", ROLLOUT), ROLLOUT, fleet,
                                      rps=5, max_duration_s=1)
    bounded.start()
    wait_for(lambda: not bounded.running, 30, "the load generator stopping at max_duration_s")
    assert bounded.stop().route is not None
