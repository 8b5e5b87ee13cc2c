"""How one operator process holds N active rollouts: memory, CPU, API load, start-up and decision lag.

On one sandbox, with one operator process, N = 10, 100, 1,000 ModelRollouts
(Gateway API routing, each held in a 10-hour canary step at 10%) are brought up
in turn (cumulatively). At each N it prints:

- the operator's resident memory (VmRSS);
- its CPU over a 60 s steady-state window;
- its API requests per second in that window (its own /metrics);
- the time from changing every new rollout's template until all of them are in
  their first step (canaryWeight 10 in status and in the HTTPRoute);
- decision lag: an abort written with the Python client until the HTTPRoute,
  seen by a watch, is 100% stable; 20 random rollouts, p50 and p99.

It first measures the abort-to-route latency with one rollout alone.

With `--analysis`, every rollout is analysed every 10 s (one errorRate and one latencyP99
guardrail on the seeds profile) against a real Prometheus scraping every 2 s. The model servers'
series come from one exporter in this process (`Exporter`: each arm's counters and histogram grow
at its rate, 18 requests/s on the stable and 2 on the candidate, 0.5% errors), so the machine's two
cores go to the operator, the apiserver and Prometheus. It then also prints, over the steady window:

- the gap between a rollout's consecutive looks (the operator's own last-look gauge, polled every
  second by this benchmark), p50 and p99, against the interval (the goal is p99 within 1.5x);
- Prometheus's instant queries per analysis interval (Prometheus's own counter);
- status writes per second per rollout (MODIFIED events on a watch of the rollouts);
- and, after the aborts, a fault in 10 candidates (30% errors) until each route is 100% stable,
  against the same fault in one rollout alone.

    python -m benchmarks.scale [--sizes 10,100,1000] [--steady 60] [--workers 8] [--analysis]

The route's weights are read from the HTTPRoute's backendRefs by the test tooling
(`e2e.harness.httproute_weights`): the benchmark shares no code with the operator's routers.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from devkit.sandbox.cluster import Sandbox
from devkit.sandbox.nodes import DEFAULT_NODES, NodeShape
from devkit.sandbox.processes import free_port
from devkit.sandbox.prometheus import PrometheusServer, start_prometheus
from e2e import harness
from e2e.harness import httproute_weights, rollout_body, wait_until
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from controller import api
from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "scale"
GROUP, VERSION, ROUTES = "gateway.networking.k8s.io", "v1", "httproutes"
# Room for 10,000 rollouts' pods (two each while a canary runs).
BENCH_NODES = tuple(NodeShape(name=f"bench-{i}", cpu="100000", memory="10000Gi", pods=6000) for i in range(4))
INTERVAL = 10.0
ANALYSIS = {"profile": "seeds", "interval": f"{INTERVAL:.0f}s", "window": "1m", "guardrails": [
    {"name": "errors", "template": "errorRate", "ignoreBelow": 0.01},
    {"name": "p99", "template": "latencyP99", "relativeToStable": 2}]}
# Requests per second of one rollout, split 90/10 as its canary step's route is; errors on a healthy arm.
RATE, HEALTHY, FAULT = 20.0, 0.005, 0.3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class RouteWatch:
    """Every HTTPRoute change in the namespace, time-stamped as it arrives."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.latest: dict[str, tuple[int, int]] = {}
        self.since: dict[str, float] = {}  # when each route took its latest weights (perf_counter)
        self.since_wall: dict[str, float] = {}  # the same, in Unix seconds
        self.changed = threading.Condition()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                        self.custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, ROUTES,
                        timeout_seconds=60):
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    with self.changed:
                        weights = httproute_weights(obj, name)
                        if self.latest.get(name) != weights:
                            self.latest[name], self.since[name] = weights, time.perf_counter()
                            self.since_wall[name] = time.time()
                        self.changed.notify_all()
                    if self.stopped.is_set():
                        break
            except (ProtocolError, client.ApiException):
                time.sleep(0.1)

    def wait(self, name: str, wanted: tuple[int, int], timeout: float) -> float:
        deadline = time.perf_counter() + timeout
        with self.changed:
            while self.latest.get(name) != wanted:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError(f"{name}: route {self.latest.get(name)} never became {wanted}")
                self.changed.wait(remaining)
            return self.since[name]

    def count(self, wanted: tuple[int, int], names: list[str]) -> int:
        with self.changed:
            return sum(1 for name in names if self.latest.get(name) == wanted)


@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    metrics_url: str

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def api_requests(self) -> float:
        text = httpx.get(self.metrics_url, timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("modelrollout_api_requests_total{"))


def rollout(name: str, image: str, analysed: bool = False) -> dict[str, Any]:
    """A rollout held in a 10-hour canary step at 10%."""
    body = rollout_body(name, [{"canary": {"weight": 10, "duration": "10h"}}], {"gatewayAPI": {"httpRoute": name}},
                        image, gpus=0, replicas=1, delay=60)
    if analysed:
        body["spec"]["analysis"] = ANALYSIS
    return body


class Exporter(ThreadingHTTPServer):
    """The seeds profile's request counters and latency histogram for every arm registered, growing
    at the arm's rate with its share of errors: one scrape target for the whole fleet."""

    BOUNDS = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")
    SHARES = (0.5, 0.8, 0.95, 0.99, 0.999, 1.0)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ExporterHandler)
        self.lock = threading.Lock()
        # (model, version) -> [requests/s, error share, requests, errors, when last advanced]
        self.arms: dict[tuple[str, str], list[float]] = {}
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    @staticmethod
    def _advance(arm: list[float], now: float) -> None:
        elapsed = now - arm[4]
        arm[2] += arm[0] * elapsed
        arm[3] += arm[0] * arm[1] * elapsed
        arm[4] = now

    def set(self, model: str, version: str, rate: float, errors: float) -> None:
        with self.lock:
            arm = self.arms.setdefault((model, version), [rate, errors, 0.0, 0.0, time.time()])
            self._advance(arm, time.time())
            arm[0], arm[1] = rate, errors

    def exposition(self) -> bytes:
        lines = ["# TYPE inference_request_total counter", "# TYPE inference_request_duration_seconds histogram"]
        now = time.time()
        with self.lock:
            for (model, version), arm in self.arms.items():
                self._advance(arm, now)
                labels = f'model="{model}",version="{version}"'
                requests, errors = arm[2], arm[3]
                lines.append(f'inference_request_total{{{labels},status="ok"}} {requests - errors:.3f}')
                lines.append(f'inference_request_total{{{labels},status="error"}} {errors:.3f}')
                lines += [f'inference_request_duration_seconds_bucket{{{labels},le="{le}"}} {requests * share:.3f}'
                          for le, share in zip(self.BOUNDS, self.SHARES, strict=True)]
                lines.append(f"inference_request_duration_seconds_sum{{{labels}}} {requests * 0.06:.3f}")
                lines.append(f"inference_request_duration_seconds_count{{{labels}}} {requests:.3f}")
        return ("\n".join(lines) + "\n").encode()


class _ExporterHandler(BaseHTTPRequestHandler):
    server: Exporter

    def do_GET(self) -> None:
        body = self.server.exposition()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return


class LookWatch:
    """Each rollout's looks, from the operator's last-look gauge polled every second."""

    def __init__(self, metrics_url: str) -> None:
        self.metrics_url = metrics_url
        self.looks: dict[str, list[float]] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        prefix = "modelrollout_analysis_last_look_timestamp_seconds{"
        # Every 4 s: each look's time is exact in the gauge, which holds it for an interval; a
        # faster poll would cost the operator more CPU for its /metrics than its looks.
        while not self.stopped.wait(4.0):
            try:
                text = httpx.get(self.metrics_url, timeout=10).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith(prefix):
                    labels, value = line.rsplit(" ", 1)
                    name = labels.split('name="', 1)[1].split('"', 1)[0]
                    seen = self.looks.setdefault(name, [])
                    if not seen or seen[-1] != float(value):
                        seen.append(float(value))

    def gaps(self, names: list[str], start: float, end: float) -> list[float]:
        """Every gap between looks in [start, end], and each rollout's open gap at the end."""
        gaps = []
        for name in names:
            looks = [t for t in self.looks.get(name, []) if start <= t <= end]
            gaps += [b - a for a, b in itertools.pairwise(looks)]
            gaps.append(end - (looks[-1] if looks else start))
        return gaps


class StatusWrites:
    """MODIFIED events on the namespace's rollouts: one per write of a status (or metadata)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.times: list[float] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                        self.custom.list_namespaced_custom_object, api.GROUP, api.VERSION, NAMESPACE, api.PLURAL,
                        timeout_seconds=60):
                    if event["type"] == "MODIFIED":
                        self.times.append(time.time())
                    if self.stopped.is_set():
                        break
            except (ProtocolError, client.ApiException):
                time.sleep(0.1)

    def between(self, start: float, end: float) -> int:
        return sum(1 for t in self.times if start <= t <= end)


def prometheus_queries(prometheus: PrometheusServer) -> float:
    """Instant queries Prometheus has answered, by its own counter."""
    text = httpx.get(f"{prometheus.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line)


@dataclass
class Analysed:
    """What the analysis mode adds: the fleet's series, and the watches on looks and writes."""

    exporter: Exporter
    prometheus: PrometheusServer
    looks: LookWatch | None = None
    writes: StatusWrites | None = None

    def serve(self, bench: Bench, names: list[str]) -> dict[str, str]:
        """Each rollout's stable and candidate series, split 90/10, from when it is first seen (an arm
        already served keeps its rate and errors); returns each rollout's candidate."""
        candidates = {}
        for name, status in bench.phases(set(names)).items():
            for version, share in ((status.get("stableRevision"), 0.9), (status.get("candidateRevision"), 0.1)):
                if version and (name, version) not in self.exporter.arms:
                    self.exporter.set(name, version, RATE * share, HEALTHY)
            if status.get("candidateRevision"):
                candidates[name] = status["candidateRevision"]
        return candidates

    def keep_serving(self, bench: Bench, names: list[str], stopped: threading.Event) -> None:
        """Serve each new canary as it starts, every 3 s, until `stopped`: a canary whose series never
        come holds and, past its errorLimit, pauses."""
        def run() -> None:
            while not stopped.wait(3.0):
                with contextlib.suppress(client.ApiException, ProtocolError):
                    self.serve(bench, names)
        threading.Thread(target=run, daemon=True).start()


def httproute(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"rules": [{"backendRefs": [{"name": f"{name}-stable", "port": 8080}]}]}}


class Bench:
    def __init__(self, kubeconfig: str) -> None:
        self.api = api_client_from_kubeconfig(kubeconfig)
        self.custom = client.CustomObjectsApi(self.api)

    def phases(self, names: set[str]) -> dict[str, dict[str, Any]]:
        listing: dict[str, Any] = self.custom.list_namespaced_custom_object(  # type: ignore[assignment]
            api.GROUP, api.VERSION, NAMESPACE, api.PLURAL)
        return {item["metadata"]["name"]: item.get("status") or {} for item in listing["items"]
                if item["metadata"]["name"] in names}

    def wait_all(self, names: list[str], ok: Any, timeout: float, what: str) -> float:
        started = time.perf_counter()
        wanted = set(names)

        def done() -> bool:
            return sum(1 for status in self.phases(wanted).values() if ok(status)) == len(wanted)

        wait_until(done, timeout, what, every=1.0)
        return time.perf_counter() - started

    def add(self, names: list[str], analysed: bool = False) -> None:
        for name in names:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, ROUTES, httproute(name))
            self.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL,
                                                        rollout(name, "model:v1", analysed))

    def start_canaries(self, names: list[str], image: str = "model:v2") -> None:
        patch = {"spec": {"template": rollout("x", image)["spec"]["template"]}}
        for name in names:
            self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name, patch)

    def retry(self, name: str) -> None:
        self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name,
                                                   {"metadata": {"annotations": {api.ACTION_ANNOTATION: "retry"}}})

    def abort(self, name: str) -> float:
        started = time.perf_counter()
        self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name,
                                                   {"metadata": {"annotations": {api.ACTION_ANNOTATION: "abort"}}})
        return started


def abort_with_one_rollout(bench: Bench, routes: RouteWatch, runs: int, analysed: Analysed | None) -> list[float]:
    """Abort, then retry (back to the canary step), `runs` times on a single rollout."""
    bench.add(["solo"], analysed is not None)
    bench.wait_all(["solo"], lambda s: s.get("phase") == "Completed", 60, "solo deployed")
    bench.start_canaries(["solo"])
    routes.wait("solo", (10, 0), timeout=60)
    if analysed is not None:
        analysed.serve(bench, ["solo"])
    lags = []
    for _ in range(runs):
        routes.wait("solo", (10, 0), timeout=60)
        started = bench.abort("solo")
        lags.append(routes.wait("solo", (0, 0), timeout=60) - started)
        bench.retry("solo")
    return lags


def fault_with_one_rollout(bench: Bench, routes: RouteWatch, runs: int, analysed: Analysed,
                           age: float) -> list[float]:
    """A fault in the solo rollout's candidate, `age` seconds into its canary step (the detector weighs
    the quiet traffic since its last restart: a late fault takes longer to show), until its route is
    100% stable, then a retry."""
    assert analysed.looks is not None
    candidate = analysed.serve(bench, ["solo"])["solo"]
    lags = []
    for _ in range(runs):
        routes.wait("solo", (10, 0), timeout=60)
        looked = len(analysed.looks.looks.get("solo", []))
        wait_until(lambda seen=looked: len(analysed.looks.looks.get("solo", [])) > seen + 1, 60,  # type: ignore[misc]
                   "two looks at the canary")
        began = datetime.fromisoformat(bench.phases({"solo"})["solo"]["stepStartedAt"]).timestamp()
        time.sleep(max(0.0, began + age - time.time()))
        started = time.perf_counter()
        analysed.exporter.set("solo", candidate, RATE * 0.1, FAULT)
        lags.append(routes.wait("solo", (0, 0), timeout=300) - started)
        analysed.exporter.set("solo", candidate, RATE * 0.1, HEALTHY)
        bench.retry("solo")
    return lags


STEPPERS, BURST, CHURN_ROUNDS = 20, 100, 3


def churn(bench: Bench, routes: RouteWatch, fleet: list[str], rng: random.Random) -> list[float]:
    """Step ends during bursts of template changes: STEPPERS rollouts whose 10% step ends 20 s after
    it starts, and BURST of the fleet's rollouts given a new template 2 s before those ends. Returns
    how late each step end reached its route (the route at 50%, as the watch saw it, minus
    status.stepEndsAt)."""
    steppers = [f"c{index:03d}" for index in range(STEPPERS)]
    for name in steppers:
        body = rollout(name, "model:v1")
        body["spec"]["strategy"]["steps"] = [{"canary": {"weight": 10, "duration": "20s"}},
                                             {"canary": {"weight": 50, "duration": "10h"}}]
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, ROUTES, httproute(name))
        bench.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, body)
    bench.wait_all(steppers, lambda s: s.get("phase") == "Completed", 120, "steppers deployed")
    late: list[float] = []
    for round_ in range(CHURN_ROUNDS):
        image = f"model:churn{round_}"
        bench.start_canaries(steppers, image)
        for name in steppers:
            routes.wait(name, (10, 0), timeout=120)
        bench.wait_all(steppers, lambda s: s.get("stepEndsAt") and s.get("canaryWeight") == 10, 120, "step ends set")
        ends = {name: status["stepEndsAt"] for name, status in bench.phases(set(steppers)).items()}
        first = min(datetime.fromisoformat(end).timestamp() for end in ends.values())
        time.sleep(max(0.0, first - 2.0 - time.time()))
        burst = rng.sample(fleet, min(BURST, len(fleet)))
        bench.start_canaries(burst, image)
        for name, end in ends.items():
            routes.wait(name, (50, 0), timeout=120)
            late.append(routes.since_wall[name] - datetime.fromisoformat(end).timestamp())
    return late


def start_operator(kubeconfig: str, workers: int, log: Path, prometheus: PrometheusServer | None) -> Operator:
    port = free_port()
    args = ("--prometheus-address", prometheus.url) if prometheus else ()
    process = harness.start_operator(kubeconfig, NAMESPACE, log, *args,
                             env={"MODELROLLOUT_METRICS_PORT": str(port), "MODELROLLOUT_WORKERS": str(workers)})
    operator = Operator(process, f"http://127.0.0.1:{port}/metrics")
    for _ in range(300):
        try:
            operator.api_requests()
            return operator
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"operator did not serve /metrics; see {log}")


def measure(bench: Bench, routes: RouteWatch, operator: Operator, active: list[str], steady: float,
            rng: random.Random, analysed: Analysed | None, candidates: dict[str, str]) -> dict[str, float]:
    # Let the last status echoes settle, and with analysis the window's figures fill (a minute of
    # data behind every look) before the steady window.
    time.sleep(70 if analysed else 5)
    cpu0, api0, t0, wall0 = operator.cpu_seconds(), operator.api_requests(), time.perf_counter(), time.time()
    queries0 = prometheus_queries(analysed.prometheus) if analysed else 0.0
    time.sleep(steady)
    cpu1, api1, t1, wall1 = operator.cpu_seconds(), operator.api_requests(), time.perf_counter(), time.time()
    figures = {"rss_mb": operator.rss_mb(), "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
               "api_rps": (api1 - api0) / (t1 - t0)}
    if analysed is not None:
        assert analysed.looks is not None and analysed.writes is not None
        gaps = analysed.looks.gaps(active, wall0, wall1)
        figures |= {"gap_p50": statistics.median(gaps), "gap_p99": percentile(gaps, 0.99),
                    "queries_per_interval": (prometheus_queries(analysed.prometheus) - queries0)
                    / (wall1 - wall0) * INTERVAL,
                    "writes_per_rollout_s": analysed.writes.between(wall0, wall1) / (wall1 - wall0) / len(active)}
    lags = []
    for name in rng.sample(active, min(20, len(active))):
        started = bench.abort(name)
        lags.append(routes.wait(name, (0, 0), timeout=60) - started)
        active.remove(name)
    figures |= {"lag_p50_ms": 1000 * statistics.median(lags), "lag_p99_ms": 1000 * percentile(lags, 0.99)}
    if analysed is not None:
        faulty = rng.sample(active, min(10, len(active)))
        ages = [time.time() - datetime.fromisoformat(status["stepStartedAt"]).timestamp()
                for status in bench.phases(set(faulty)).values()]
        figures["fault_age"] = statistics.median(ages)
        started = time.perf_counter()
        for name in faulty:
            analysed.exporter.set(name, candidates[name], RATE * 0.1, FAULT)
            active.remove(name)
        faults = [routes.wait(name, (0, 0), timeout=600) - started for name in faulty]
        figures |= {"fault_p50": statistics.median(faults), "fault_max": max(faults)}
    return figures


def grow(bench: Bench, routes: RouteWatch, operator: Operator, sizes: list[int], steady: float,
         rng: random.Random, analysed: Analysed | None) -> list[str]:
    """Bring the fleet to each size in turn, and print its row; returns the fleet."""
    names: list[str] = []
    active: list[str] = []
    candidates: dict[str, str] = {}
    for size in sizes:
        new = [f"m{index:05d}" for index in range(len(names), size)]
        names += new
        started = time.perf_counter()
        bench.add(new, analysed is not None)
        bench.wait_all(new, lambda s: s.get("phase") == "Completed", 60 + size, "deployed")
        deploy_s = time.perf_counter() - started
        to_step = time.perf_counter()
        serving = threading.Event()
        if analysed is not None:
            analysed.keep_serving(bench, new, serving)
        bench.start_canaries(new)
        bench.wait_all(new, lambda s: s.get("canaryWeight") == 10 and s.get("phase") == "Progressing",
                       60 + size, "first step")
        for name in new:
            routes.wait(name, (10, 0), timeout=60)
        to_step_s = time.perf_counter() - to_step
        serving.set()
        if analysed is not None:
            candidates |= analysed.serve(bench, new)
        active += new
        figures = measure(bench, routes, operator, active, steady, rng, analysed, candidates)
        per = figures["api_rps"] / max(1, len(active))
        line = (f"{size:>6} {len(active):>6} {figures['rss_mb']:>7.0f} {figures['cpu_pct']:>6.1f} "
                f"{figures['api_rps']:>7.2f} {per:>13.4f} {deploy_s:>8.1f} "
                f"{to_step_s:>11.1f} {figures['lag_p50_ms']:>10.0f} {figures['lag_p99_ms']:>10.0f}")
        if analysed is not None:
            line += (f" {figures['gap_p50']:>8.1f} / {figures['gap_p99']:>6.1f} "
                     f"{figures['queries_per_interval']:>16.1f} {figures['writes_per_rollout_s']:>16.4f} "
                     f"{figures['fault_p50']:>6.1f} / {figures['fault_max']:>5.1f} "
                     f"(at a median {figures['fault_age']:.0f} s into the step)")
        print(line, flush=True)
    return names


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--steady", type=float, default=60.0, help="steady-state window, seconds")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--analysis", action="store_true", help="analyse every rollout every 10 s")
    parser.add_argument("--fault-runs", type=int, default=3, help="single-rollout faults (with --analysis)")
    parser.add_argument("--fault-age", type=float, default=0.0,
                        help="seconds into its step a single rollout's fault starts (default: after two looks)")
    parser.add_argument("--churn", action="store_true",
                        help=f"then {CHURN_ROUNDS} rounds of {STEPPERS} step ends during {BURST} template changes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    # SIGTERM unwinds like Ctrl-C, so the sandbox and the operators are stopped by the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(n) for n in args.sizes.split(",")]
    rng = random.Random(args.seed)
    sandbox = Sandbox(name=f"scale-{os.getpid()}")
    sandbox.up(node_shapes=DEFAULT_NODES + BENCH_NODES, ready_timeout=180)
    workdir = Path(tempfile.mkdtemp(prefix="scale-"))
    operator: Operator | None = None
    analysed: Analysed | None = None
    try:
        kubeconfig = str(sandbox.kubeconfig)
        bench = Bench(kubeconfig)
        client.CoreV1Api(bench.api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        if args.analysis:
            exporter = Exporter()
            analysed = Analysed(exporter, start_prometheus(workdir / "prometheus", [
                {"job_name": "fleet", "static_configs": [{"targets": [exporter.target]}]}], scrape_interval="2s"))
        operator = start_operator(kubeconfig, args.workers, workdir / "operator.log",
                                  analysed.prometheus if analysed else None)
        idle_rss = operator.rss_mb()
        routes = RouteWatch(bench.api)
        if analysed is not None:
            analysed.looks, analysed.writes = LookWatch(operator.metrics_url), StatusWrites(bench.api)
        print(f"operator idle: {idle_rss:.0f} MB resident, {args.workers} workers; log {workdir / 'operator.log'}"
              + ("; every rollout analysed every 10 s, Prometheus scraping every 2 s" if analysed else ""))
        single = abort_with_one_rollout(bench, routes, 20, analysed)
        print(f"one rollout, abort written until the HTTPRoute is 100% stable (20 runs): "
              f"p50 {1000 * statistics.median(single):.0f} ms, p99 {1000 * percentile(single, 0.99):.0f} ms",
              flush=True)
        if analysed is not None and args.fault_runs > 0:
            faults = fault_with_one_rollout(bench, routes, args.fault_runs, analysed, args.fault_age)
            print(f"one rollout, a 30% error fault {args.fault_age:.0f} s or more into its step, until the "
                  f"HTTPRoute is 100% stable ({len(faults)} runs): "
                  f"p50 {statistics.median(faults):.1f} s, max {max(faults):.1f} s", flush=True)
        print(f"{'N':>6} {'active':>6} {'RSS MB':>7} {'CPU %':>6} {'API/s':>7} {'API/s/rollout':>13} "
              f"{'deploy s':>8} {'to step 1 s':>11} {'lag p50 ms':>10} {'lag p99 ms':>10}"
              + (f" {'look gap p50/p99 s':>18} {'queries/interval':>16} {'writes/s/rollout':>16} "
                 f"{'fault p50/max s':>15}" if analysed else ""), flush=True)
        fleet = grow(bench, routes, operator, sizes, args.steady, rng, analysed)
        if args.churn:
            late = churn(bench, routes, fleet, rng)
            print(f"step ends during bursts of {BURST} template changes ({len(late)} step ends): late by "
                  f"p50 {statistics.median(late):.2f} s, p99 {percentile(late, 0.99):.2f} s, max {max(late):.2f} s "
                  "(stepEndsAt has whole seconds; the route as a watch saw it)", flush=True)
        routes.stopped.set()
    finally:
        if operator is not None:
            operator.process.terminate()
            operator.process.wait(15)
        if analysed is not None:
            analysed.prometheus.stop()
            analysed.exporter.shutdown()
        sandbox.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
