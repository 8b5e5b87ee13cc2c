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

It then measures the abort-to-route latency with one rollout on a fresh
namespace and prints a clearly marked extrapolation to 10,000.

    python -m benchmarks.scale [--sizes 10,100,1000] [--steady 60] [--workers 8]

The route's weights are read from the HTTPRoute's backendRefs by the test tooling
(`e2e.harness.httproute_weights`): the benchmark shares no code with the operator's routers.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Any

import httpx
from devkit.sandbox.cluster import Sandbox
from devkit.sandbox.nodes import DEFAULT_NODES, NodeShape
from devkit.sandbox.processes import free_port
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class RouteWatch:
    """Every HTTPRoute change in the namespace, time-stamped as it arrives."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.latest: dict[str, tuple[int, int]] = {}
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
                        self.latest[name] = httproute_weights(obj, name)
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
        return time.perf_counter()

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


def rollout(name: str, image: str) -> dict[str, Any]:
    """A rollout held in a 10-hour canary step at 10%."""
    return rollout_body(name, [{"canary": {"weight": 10, "duration": "10h"}}], {"gatewayAPI": {"httpRoute": name}},
                        image, gpus=0, replicas=1, delay=60)


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

    def add(self, names: list[str]) -> None:
        for name in names:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, ROUTES, httproute(name))
            self.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL,
                                                        rollout(name, "model:v1"))

    def start_canaries(self, names: list[str]) -> None:
        patch = {"spec": {"template": rollout("x", "model:v2")["spec"]["template"]}}
        for name in names:
            self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name, patch)

    def abort(self, name: str) -> float:
        started = time.perf_counter()
        self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name,
                                                   {"metadata": {"annotations": {api.ACTION_ANNOTATION: "abort"}}})
        return started


def abort_with_one_rollout(bench: Bench, routes: RouteWatch, runs: int) -> list[float]:
    """Abort, then retry (back to the canary step), `runs` times on a single rollout."""
    bench.add(["solo"])
    bench.wait_all(["solo"], lambda s: s.get("phase") == "Completed", 60, "solo deployed")
    bench.start_canaries(["solo"])
    lags = []
    for _ in range(runs):
        routes.wait("solo", (10, 0), timeout=60)
        started = bench.abort("solo")
        lags.append(routes.wait("solo", (0, 0), timeout=60) - started)
        bench.custom.patch_namespaced_custom_object(
            api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, "solo",
            {"metadata": {"annotations": {api.ACTION_ANNOTATION: "retry"}}})
    return lags


def start_operator(kubeconfig: str, workers: int, log: Path) -> Operator:
    port = free_port()
    process = harness.start_operator(kubeconfig, NAMESPACE, log,
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
            rng: random.Random) -> dict[str, float]:
    time.sleep(5)  # let the last status echoes settle before the steady window
    cpu0, api0, t0 = operator.cpu_seconds(), operator.api_requests(), time.perf_counter()
    time.sleep(steady)
    cpu1, api1, t1 = operator.cpu_seconds(), operator.api_requests(), time.perf_counter()
    lags = []
    for name in rng.sample(active, min(20, len(active))):
        started = bench.abort(name)
        lags.append(routes.wait(name, (0, 0), timeout=60) - started)
        active.remove(name)
    return {"rss_mb": operator.rss_mb(), "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
            "api_rps": (api1 - api0) / (t1 - t0), "lag_p50_ms": 1000 * statistics.median(lags),
            "lag_p99_ms": 1000 * percentile(lags, 0.99)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--steady", type=float, default=60.0, help="steady-state window, seconds")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the sandbox and the operators are stopped by the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(n) for n in args.sizes.split(",")]
    rng = random.Random(args.seed)
    sandbox = Sandbox(name=f"scale-{os.getpid()}")
    sandbox.up(node_shapes=DEFAULT_NODES + BENCH_NODES, ready_timeout=180)
    workdir = Path(tempfile.mkdtemp(prefix="scale-"))
    operator: Operator | None = None
    try:
        kubeconfig = str(sandbox.kubeconfig)
        bench = Bench(kubeconfig)
        client.CoreV1Api(bench.api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        operator = start_operator(kubeconfig, args.workers, workdir / "operator.log")
        idle_rss = operator.rss_mb()
        routes = RouteWatch(bench.api)
        print(f"operator idle: {idle_rss:.0f} MB resident, {args.workers} workers; log {workdir / 'operator.log'}")
        print(f"{'N':>6} {'active':>6} {'RSS MB':>7} {'CPU %':>6} {'API/s':>7} {'API/s/rollout':>13} "
              f"{'deploy s':>8} {'to step 1 s':>11} {'lag p50 ms':>10} {'lag p99 ms':>10}", flush=True)
        single = abort_with_one_rollout(bench, routes, runs=20)
        print(f"one rollout, abort written until the HTTPRoute is 100% stable (20 runs): "
              f"p50 {1000 * statistics.median(single):.0f} ms, p99 {1000 * percentile(single, 0.99):.0f} ms",
              flush=True)
        names: list[str] = []
        active: list[str] = []
        for size in sizes:
            new = [f"m{index:05d}" for index in range(len(names), size)]
            names += new
            started = time.perf_counter()
            bench.add(new)
            bench.wait_all(new, lambda s: s.get("phase") == "Completed", 60 + size, "deployed")
            deploy_s = time.perf_counter() - started
            to_step = time.perf_counter()
            bench.start_canaries(new)
            bench.wait_all(new, lambda s: s.get("canaryWeight") == 10 and s.get("phase") == "Progressing",
                           60 + size, "first step")
            for name in new:
                routes.wait(name, (10, 0), timeout=60)
            to_step_s = time.perf_counter() - to_step
            active += new
            figures = measure(bench, routes, operator, active, args.steady, rng)
            per = figures["api_rps"] / max(1, len(active))
            print(f"{size:>6} {len(active):>6} {figures['rss_mb']:>7.0f} {figures['cpu_pct']:>6.1f} "
                  f"{figures['api_rps']:>7.2f} {per:>13.4f} {deploy_s:>8.1f} "
                  f"{to_step_s:>11.1f} {figures['lag_p50_ms']:>10.0f} {figures['lag_p99_ms']:>10.0f}", flush=True)
        routes.stopped.set()
    finally:
        if operator is not None:
            operator.process.terminate()
            operator.process.wait(15)
        sandbox.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
