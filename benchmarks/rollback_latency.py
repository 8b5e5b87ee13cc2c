"""Rollback latency on the sandbox, and the API calls one rollout costs.

An abort is written with `kubectl patch` (the action annotation); the clock
runs from launching kubectl until the HTTPRoute stores 100% stable and no
mirror. The operator runs as its own process with its /metrics, from which
the API calls of one full rollout are read.

    python -m benchmarks.rollback_latency [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from devkit.sandbox.build import ensure_binaries
from devkit.sandbox.cluster import Sandbox
from devkit.sandbox.processes import free_port, terminate
from e2e.harness import httproute_state, rollout_body, start_operator, wait_until
from e2e.world import e2e_world
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from controller import api
from controller.kube.client import api_client_from_kubeconfig
from controller.routers.gatewayapi import read_route

NAMESPACE = "bench"
ACTION = api.ACTION_ANNOTATION


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Bench:
    def __init__(self, kubeconfig: str, kubectl: Path) -> None:
        self.kubeconfig, self.kubectl_binary = kubeconfig, kubectl
        self.api = api_client_from_kubeconfig(kubeconfig)
        self.custom = client.CustomObjectsApi(self.api)

    def kubectl(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(self.kubectl_binary), "--kubeconfig", self.kubeconfig, "-n", NAMESPACE, *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def route(self, name: str) -> tuple[int, int]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", name)
        return read_route(obj, f"{name}-stable", f"{name}-candidate")

    def status(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name)
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def wait(self, probe: Any, timeout: float = 120.0) -> float:
        """Seconds until `probe` holds, polled every 50 ms."""
        started = time.perf_counter()
        wait_until(probe, timeout, "benchmark condition", every=0.05)
        return time.perf_counter() - started

    def gone(self, name: str) -> bool:
        try:
            self.status(name)
        except client.ApiException as error:
            return bool(error.status == 404)
        return False

    def annotate(self, name: str, action: str) -> None:
        process = self.kubectl("annotate", "mro", name, f"{ACTION}={action}", "--overwrite")
        assert process.wait(30) == 0, process.stderr.read() if process.stderr else b""


class RouteWatcher:
    """Watches the HTTPRoute and notes when it first stores (0, 0): no polling load on the apiserver."""

    def __init__(self, bench: Bench, name: str) -> None:
        self.bench, self.name = bench, name
        self.stable = threading.Event()
        self.stable_at = 0.0
        threading.Thread(target=self._run, daemon=True).start()

    def reset(self) -> None:
        self.stable.clear()

    def _run(self) -> None:
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            self.bench.custom.list_namespaced_custom_object, "gateway.networking.k8s.io", "v1", NAMESPACE,
            "httproutes", field_selector=f"metadata.name={self.name}", timeout_seconds=3600,
        )
        try:
            for event in stream:
                route = event["object"]
                state = read_route(route, f"{self.name}-stable", f"{self.name}-candidate")
                if state == (0, 0) and not self.stable.is_set():
                    self.stable_at = time.perf_counter()
                    self.stable.set()
        except (ProtocolError, client.ApiException):
            return  # The sandbox is going down at the end of the benchmark.


def _route(name: str) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [{"backendRefs": [{"name": f"{name}-stable", "port": 8080, "weight": 100}]}]}}


def _requests(metrics_url: str) -> dict[str, float]:
    totals: dict[str, float] = {"reads": 0.0, "writes": 0.0}
    for line in httpx.get(metrics_url, timeout=5).text.splitlines():
        if line.startswith("modelrollout_api_requests_total{"):
            verb = line.split('verb="')[1].split('"')[0]
            totals["reads" if verb == "GET" else "writes"] += float(line.rsplit(" ", 1)[1])
    return totals


def _set_image(bench: Bench, name: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "model", "image": image, "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    bench.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name, patch)


def fault_to_rollback(api_client: client.ApiClient, kubeconfig: str, runs: int, weight: int,
                      gateway_profile: str | None = None) -> list[float]:
    """Inject an error spike into the candidate's model server; time until the route is 100% stable.

    Real model-server processes, Prometheus scraping every 1 s (the servers and Envoy), analysis every
    2 s, load routed by Envoy Gateway. With `gateway_profile`, the errors are Envoy's counts, not the
    server's. After each rollback the fault is cleared and the rollout retried.
    """
    namespace = "bench-e2e"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as workdir, e2e_world(api_client, namespace, Path(kubeconfig),
                                                             Path(workdir), rps=60) as world:
        extra: dict[str, Any] = {"gatewayProfile": gateway_profile} if gateway_profile else {}
        world.deploy([{"canary": {"weight": weight, "duration": "1h"}}], guardrails=[
            {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.05}], **extra)
        world.roll_out("good-rebuild")
        for run in range(runs):
            healthy = world.rollouts.wait_status(
                "scorer", lambda s: s.get("canaryWeight") == weight and s.get("analysis", {}).get("verdict") == "Pass",
                120, "a measured, healthy canary")
            time.sleep(3)
            revision = healthy["candidateRevision"]
            world.fleet.set_knobs(revision, error_rate=0.4)
            broke = time.monotonic()
            wait_until(lambda: httproute_state(world.rollouts, "scorer") == (0, 0), 120, f"rollback {run}")
            took = time.monotonic() - broke
            seconds.append(took)
            world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", 30, "RolledBack")
            world.fleet.set_knobs(revision, error_rate=0.002)
            world.rollouts.act("scorer", "retry")
    return seconds


def main() -> None:  # noqa: PLR0915 - one linear scenario reads best top to bottom
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--fault-runs", type=int, default=10,
                        help="end-to-end fault injections (real Prometheus and model servers); 0 skips")
    parser.add_argument("--fault-weight", type=int, default=10, help="the canary's weight during the fault runs")
    parser.add_argument("--gateway-profile", choices=["envoy"], default=None,
                        help="the fault runs read errors from Envoy's counters (analysis.gatewayProfile)")
    args = parser.parse_args()

    binaries = ensure_binaries()
    sandbox = Sandbox(name=f"bench-rollback-{os.getpid()}")
    state = sandbox.up(gateway="envoy")
    operator: subprocess.Popen[bytes] | None = None
    try:
        bench = Bench(state.kubeconfig, binaries.kubectl)
        client.CoreV1Api(bench.api).create_namespace({"metadata": {"name": NAMESPACE}})  # type: ignore[arg-type]
        port = free_port()
        log = Path(tempfile.mkdtemp()) / "operator.log"
        operator = start_operator(state.kubeconfig, NAMESPACE, log, env={"MODELROLLOUT_METRICS_PORT": str(port)})
        metrics_url = f"http://127.0.0.1:{port}/metrics"

        # API calls of one complete rollout: template change -> shadow -> canary -> promoted.
        for name in ("cost", "abort"):
            bench.custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE,
                                                         "httproutes", _route(name))
        cost_steps = [{"shadow": {"percent": 100, "duration": "2s"}}, {"canary": {"weight": 50, "duration": "2s"}}]
        cost_body = rollout_body("cost", cost_steps, {"gatewayAPI": {"httpRoute": "cost"}}, "m:v1", replicas=1)
        bench.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, cost_body)
        bench.wait(lambda: bench.status("cost").get("phase") == "Completed")
        time.sleep(2)
        before = _requests(metrics_url)
        _set_image(bench, "cost", "m:v2")
        took = bench.wait(lambda: bench.status("cost").get("phase") == "Completed"
                          and bench.status("cost").get("previousStableRevision"))
        after = _requests(metrics_url)
        print(f"one rollout (shadow 2s + canary 2s) took {took:.1f} s and "
              f"{after['reads'] - before['reads']:.0f} reads + {after['writes'] - before['writes']:.0f} writes "
              f"= {after['reads'] + after['writes'] - before['reads'] - before['writes']:.0f} API calls")

        abort_steps = [{"canary": {"weight": 50, "duration": "1h"}}]
        abort_body = rollout_body("abort", abort_steps, {"gatewayAPI": {"httpRoute": "abort"}}, "m:v1", replicas=1)
        bench.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, abort_body)
        bench.wait(lambda: bench.status("abort").get("phase") == "Completed")
        _set_image(bench, "abort", "m:v2")
        from_launch, from_exit = [], []
        watcher = RouteWatcher(bench, "abort")
        for run in range(args.runs):
            bench.wait(lambda: bench.route("abort") == (50, 0))
            watcher.reset()
            started = time.perf_counter()
            kubectl = bench.kubectl("patch", "mro", "abort", "--type", "merge", "-p",
                                    json.dumps({"metadata": {"annotations": {ACTION: "abort"}}}))
            kubectl.wait(30)
            exited = time.perf_counter()
            if not watcher.stable.wait(30):
                raise TimeoutError(f"run {run}: route never returned to stable")
            from_launch.append(watcher.stable_at - started)
            from_exit.append(max(0.0, watcher.stable_at - exited))
            bench.wait(lambda: bench.status("abort").get("phase") == "RolledBack")
            bench.annotate("abort", "retry")
        print(f"rollback latency over {args.runs} aborts, from launching `kubectl patch` until the HTTPRoute "
              f"stores 100% stable / mirror 0: p50 {statistics.median(from_launch) * 1000:.0f} ms, "
              f"p99 {_percentile(from_launch, 0.99) * 1000:.0f} ms, max {max(from_launch) * 1000:.0f} ms")
        print(f"  from kubectl's exit (the write accepted): p50 {statistics.median(from_exit) * 1000:.0f} ms, "
              f"p99 {_percentile(from_exit, 0.99) * 1000:.0f} ms")
        if args.fault_runs:
            # The four fake GPUs are held by the rollouts above: free them first.
            for name in ("cost", "abort"):
                # The stable outlives the rollout while its route names it: take it away by hand.
                bench.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name)
                bench.wait(partial(bench.gone, name), 60)
                client.AppsV1Api(bench.api).delete_collection_namespaced_deployment(
                    NAMESPACE, label_selector=f"rollouts.mlops.dev/rollout={name}")
            bench.wait(lambda: not client.AppsV1Api(bench.api).list_namespaced_deployment(NAMESPACE).items, 120)
            faults = fault_to_rollback(bench.api, state.kubeconfig, args.fault_runs, args.fault_weight,
                                       args.gateway_profile)
            source = f"errors counted by {args.gateway_profile}" if args.gateway_profile else "the server's errors"
            print(f"end to end through Envoy Gateway, {len(faults)} error spikes (40% errors) injected into the "
                  f"candidate's model server at a {args.fault_weight}% canary, {source}, "
                  f"1 s scrape, 2 s analysis interval, until the route is 100% stable: "
                  f"p50 {statistics.median(faults):.1f} s, max {max(faults):.1f} s "
                  f"(all: {', '.join(f'{f:.1f}' for f in faults)})")
    finally:
        if operator is not None:
            terminate([operator.pid])
        sandbox.down()


if __name__ == "__main__":
    main()
