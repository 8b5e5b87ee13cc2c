"""The e2e tooling on the real sandbox and a real Prometheus: the model-server simulator, the fleet
that runs one server process per pod (on the pod's address, in the pods' network namespace), and
nginx serving routes written here by hand, with load sent to nginx only. The routes are the test's
own, not the operator's: the data plane serves a route as written, whoever wrote it."""

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
from devkit.sandbox.cluster import SandboxState
from devkit.sandbox.processes import free_port, pid_alive
from devkit.sandbox.prometheus import PrometheusServer, start_prometheus
from e2e.envoy import EnvoyRoute, Proxy
from e2e.fleet import REVISION_LABEL, ROLLOUT_LABEL, ModelFleet
from e2e.gateway import Gateway
from e2e.harness import stop_process
from e2e.loadgen import LoadGenerator
from e2e.model_server import LATENCY_BUCKETS, PREDICTION_BUCKETS, KnobError, Knobs, ModelServer, ServerConfig
from e2e.netns import PodNetwork
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.rollout_helpers import wait_until

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
        yield f"http://127.0.0.1:{wait_until(port, 60, 'model server port file')}"
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
    with PodNetwork() as network, ModelFleet(api_client, namespace, ROLLOUT, IMAGE_KNOBS.__getitem__,
                                              tmp_path / "fleet", network, seed=7) as started:
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


def test_a_cold_model_server_answers_its_first_requests_slowly_and_says_which() -> None:
    knobs = Knobs(latency_ms=0, cold_requests=3, cold_latency_ms=200)
    with ModelServer(ServerConfig("scorer", "v", knobs=knobs, seed=1)) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        took = []
        for mirrored in (True, False, True, False, False):
            answer = http.post("/predict", json={}, headers={"X-Mirrored": "true"} if mirrored else {})
            took.append(answer.elapsed.total_seconds())
        assert min(took[:3]) >= 0.2 > max(took[3:])
        assert http.get("/stats").json() == {"live": 3, "mirrored": 2, "cold_live": 1, "cold_mirrored": 2}
    with pytest.raises(KnobError):
        Knobs(cold_requests=-1)


# ---- fleet, nginx, load generator and Prometheus on the sandbox -----------------------------
GATEWAY_API = ("gateway.networking.k8s.io", "v1", "httproutes")
ISTIO = ("networking.istio.io", "v1", "virtualservices")


def hand_written_httproute() -> dict[str, Any]:
    """70/30 between the two Services with half the traffic mirrored to the candidate, and a cohort
    (X-Cohort: b) that always goes to the candidate: written here, never by the operator."""
    stable, candidate = f"{ROLLOUT}-stable", f"{ROLLOUT}-candidate"
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": ROLLOUT},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [{"name": stable, "port": PORT, "weight": 70},
                             {"name": candidate, "port": PORT, "weight": 30}],
             "filters": [{"type": "RequestMirror",
                          "requestMirror": {"backendRef": {"name": candidate, "port": PORT}, "percent": 50}}]},
            {"matches": [{"headers": [{"name": "X-Cohort", "value": "b"}]}],
             "backendRefs": [{"name": candidate, "port": PORT}]},
        ]},
    }


def test_nginx_serves_a_hand_written_httproute_and_the_servers_see_its_split(
    api_client: client.ApiClient, namespace: str, tmp_path: Path, fleet: ModelFleet, prometheus: PrometheusServer,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(*GATEWAY_API[:2], namespace, GATEWAY_API[2], hand_written_httproute())

    urls = fleet.wait_for_revisions("rev1", "rev2")
    assert all(url.startswith("http://10.6") for url in urls.values()), f"pod addresses, not loopback: {urls}"
    assert fleet.knobs("rev2").prediction_mean == 0.5  # knobs_for_image("scorer:better")
    targets = json.loads(fleet.targets_path.read_text())
    assert sorted(t["labels"]["revision"] for t in targets) == ["rev1", "rev2"]

    with Gateway(api_client, namespace, ("gatewayAPI", ROLLOUT), tmp_path / "nginx", free_port()) as gateway:
        gateway.wait_applied()
        assert "10.6" in gateway.config_path.read_text(), "the upstreams are the EndpointSlices' pod addresses"
        stats = LoadGenerator(gateway.url, rps=50, seed=3, max_duration_s=60).run(8)
        served = fleet.served()
        cohort = LoadGenerator(gateway.url, rps=20, seed=4, max_duration_s=60,
                               headers=lambda _: {"X-Cohort": "b"}).run(2)
    assert stats.sent >= 150, stats  # 50 rps for 8 s is 400; a slow machine sends fewer, never none
    assert stats.total(outcome="ok") >= 0.95 * stats.sent, stats
    # Measured where it landed: the answering servers, and what each server counted.
    assert 0.20 <= stats.share("rev2") <= 0.40, stats
    live = served["rev1"]["live"] + served["rev2"]["live"]
    assert 0.20 <= served["rev2"]["live"] / live <= 0.40, served
    assert served["rev1"]["mirrored"] == 0 and 0.35 <= served["rev2"]["mirrored"] / live <= 0.65, served
    assert cohort.sent > 0 and cohort.by_version() == {"rev2": cohort.total(outcome="ok")}, cohort

    # Prometheus found both servers through file_sd; it ends up with every request they answered.
    query = f'sum by (version) (inference_request_total{{model="{ROLLOUT}"}})'

    def scraped_everything() -> dict[str, float] | None:
        seen = prometheus_query(prometheus, query)
        now = fleet.served()
        wanted = {rev: now[rev]["live"] + now[rev]["mirrored"] for rev in ("rev1", "rev2")}
        return seen if all(seen.get(rev) == wanted[rev] for rev in wanted) else None

    totals = wait_until(scraped_everything, 60, "Prometheus totals matching what the servers counted")
    assert totals["rev1"] > 0 and totals["rev2"] > 0

    # Scaled to 0: the fleet stops that pod's process and drops its target.
    pid = next(pid for pod, pid in fleet.pids().items() if "rev2" in pod)
    client.AppsV1Api(api_client).patch_namespaced_deployment_scale(
        f"{ROLLOUT}-rev2", namespace, {"spec": {"replicas": 0}})
    fleet.wait_until(lambda urls: set(urls) == {"rev1"}, 60, "rev2 stopped")
    wait_until(lambda: not pid_alive(pid), 30, f"PID {pid} gone")
    wait_until(lambda: [t["labels"]["revision"] for t in json.loads(fleet.targets_path.read_text())] == ["rev1"],
             30, "targets.json without rev2")


def envoy_counts(proxy: Proxy, cluster: str) -> dict[str, float]:
    """One Envoy cluster's request counts from Envoy's own Prometheus stats: total, and by response class."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(proxy.stats_url, timeout=10).text):
        for sample in family.samples:
            if sample.labels.get("envoy_cluster_name") != cluster:
                continue
            if sample.name == "envoy_cluster_upstream_rq_total":
                counts["total"] = sample.value
            elif sample.name == "envoy_cluster_upstream_rq_xx":
                counts[sample.labels["envoy_response_code_class"] + "xx"] = sample.value
    return counts


def test_envoy_gateway_serves_a_hand_written_httproute_split_mirror_and_header_match(
    api_client: client.ApiClient, envoy_gateway: SandboxState, namespace: str, tmp_path: Path, fleet: ModelFleet,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(*GATEWAY_API[:2], namespace, GATEWAY_API[2], hand_written_httproute())
    fleet.wait_for_revisions("rev1", "rev2")
    # mergeBackends: one Envoy cluster per Service port (named by the port's name); a mirror has its own.
    candidate, mirror = (f"service/{namespace}/{ROLLOUT}-candidate/{PORT}/http",
                         f"httproute/{namespace}/{ROLLOUT}/rule/0-mirror-0")

    with EnvoyRoute(api_client, namespace, tmp_path / "envoy") as gateway:
        assert gateway.proxy is not None
        proxy = gateway.proxy
        # Envoy Gateway pushes the route once it has seen the Services' endpoints: until then, 5xx.
        wait_until(lambda: httpx.post(f"{gateway.url}/predict", json={}, timeout=5).status_code == 200, 120,
                   "the route served")
        before = {cluster: envoy_counts(proxy, cluster).get("total", 0.0) for cluster in (candidate, mirror)}
        stats = LoadGenerator(gateway.url, rps=50, seed=3, max_duration_s=60).run(8)
        cohort = LoadGenerator(gateway.url, rps=20, seed=4, max_duration_s=60,
                               headers=lambda _: {"X-Cohort": "b"}).run(2)
        live = stats.total("rev2", outcome=None) + cohort.sent

        def counted_live() -> dict[str, float] | None:
            now = {cluster: envoy_counts(proxy, cluster).get("total", 0.0) - before[cluster]
                   for cluster in (candidate, mirror)}
            return now if now[candidate] >= live else None

        def answered_all() -> dict[str, dict[str, int]] | None:
            now = fleet.served()
            return now if now["rev2"]["live"] >= live + counted[mirror] else None

        counted = wait_until(counted_live, 60, "Envoy's counts of the live requests")
        # The servers cannot tell a mirrored copy from a live request (Envoy does not mark it): rev2's
        # server answers its live requests and the mirrored copies as one. A copy is fire-and-forget,
        # so it may be answered after its live request.
        served = wait_until(answered_all, 60, "rev2's server answering the live and the mirrored requests")
        # The world's own reading of the same counters agrees with this test's parse of them.
        assert gateway.live(f"{ROLLOUT}-candidate") == envoy_counts(proxy, candidate)["total"]
        assert gateway.mirrored(ROLLOUT) == envoy_counts(proxy, mirror)["total"]
        data = gateway.data
    assert stats.sent >= 150 and stats.total(outcome="ok") >= 0.95 * stats.sent, stats
    # Envoy picks a weighted cluster per request at random: 30% within 3.5 standard deviations at 150+.
    assert 0.17 <= stats.share("rev2") <= 0.43, stats
    assert cohort.sent > 0 and cohort.by_version() == {"rev2": cohort.total(outcome="ok")}, cohort
    # Envoy counts each arm's live requests in the Service's cluster, and the mirrored copies apart.
    assert counted[candidate] == live, (counted, stats, cohort)
    assert 0.35 <= counted[mirror] / stats.sent <= 0.65, (counted, stats)
    assert served["rev1"]["mirrored"] == served["rev2"]["mirrored"] == 0, served
    assert not data.proxies, "the Envoy was stopped with its kubelet"


def test_nginx_follows_a_virtualservice_and_fleet_keeps_knobs_across_a_restart(
    api_client: client.ApiClient, namespace: str, tmp_path: Path, fleet: ModelFleet,
) -> None:
    candidate = {"destination": {"host": f"{ROLLOUT}-candidate", "port": {"number": PORT}}, "weight": 100}
    stable = {"destination": {"host": f"{ROLLOUT}-stable", "port": {"number": PORT}}, "weight": 0}
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(*ISTIO[:2], namespace, ISTIO[2], {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": ROLLOUT},
        "spec": {"hosts": [ROLLOUT], "http": [{"name": "primary", "route": [stable, candidate]}]}})
    fleet.wait_for_revisions("rev1", "rev2")

    # Fault injection on the candidate; a crashed server comes back with the same knobs.
    assert fleet.set_knobs("rev2", error_rate=1.0).error_rate == 1.0
    pod, old_pid = next((pod, pid) for pod, pid in fleet.pids().items() if "rev2" in pod)
    os.kill(old_pid, signal.SIGKILL)  # a process the fleet started for this test
    fleet.wait_until(lambda urls: "rev2" in urls and fleet.pids().get(pod) not in (None, old_pid), 60,
                   "rev2 restarted")
    assert fleet.restarts >= 1
    assert fleet.knobs("rev2").error_rate == 1.0

    with Gateway(api_client, namespace, ("istio", ROLLOUT), tmp_path / "nginx", free_port()) as gateway:
        gateway.wait_applied()
        stats = LoadGenerator(gateway.url, rps=20, seed=5, max_duration_s=60).run(3)
        assert stats.sent > 0 and stats.by_version(outcome=None) == {"rev2": stats.sent}, stats
        assert stats.total("rev2", "error") == stats.sent, stats

        # A hard bound: max_duration_s stops the generator by itself.
        bounded = LoadGenerator(gateway.url, rps=5, max_duration_s=1)
        bounded.start()
        wait_until(lambda: not bounded.running, 30, "the load generator stopping at max_duration_s")
        assert bounded.stop().sent >= 1
