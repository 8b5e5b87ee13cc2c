"""The operator alone at 10,000 rollouts: watch events and Prometheus answers replayed into it.

The sandbox's apiserver creates about 2.3 rollouts a second on two cores, so 10,000 rollouts cannot
be measured through it. Here the operator's runtime (`ReconcileLoop`, its caches, its Prometheus
pool and its Kubernetes client, unchanged) runs in this process, and a stand-in for the control
plane and Prometheus (`benchmarks/replay_plane.py`) runs in another. The operator's writes go over
loopback HTTP to the stand-in, which keeps the objects and streams every change back as a watch
event. A reader thread files those events in the caches with the operator's own view functions,
where Kopf's indexes would (`controller/operator.py`), and wakes the loop as its handlers do.
Kopf itself is not in the loop: its per-object bookkeeping is not measured.

The rollouts are the sandbox benchmark's (`benchmarks/scale.py`): Gateway API routing, one
errorRate and one latencyP99 guardrail on the seeds profile at `interval: 10s`, a 10-hour canary
step at 10%. Prometheus's answers cover every arm that has a Deployment, growing at 10 requests/s.

It prints, for N rollouts:
- memory (VmRSS of this process) at rest and its peak while the N arrive, and the time they take;
- the time from starting every canary until every rollout has been looked at once, and then the
  time for one more look at all of them (a sweep);
- over a steady window: the gaps between each rollout's looks, the process's CPU, Prometheus
  queries per interval, status writes per second per rollout;
- the abort lag: an abort written to the stand-in until the route it streams back is 100% stable.

    python -m benchmarks.replay [--rollouts 10000] [--workers 8] [--steady 60] [--aborts 20]
                                [--first-look-cap 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from e2e.harness import httproute_weights
from kubernetes import client

from benchmarks.scale import INTERVAL, httproute, percentile, rollout
from controller import api, metrics
from controller.kube.cache import (
    REVISION_LABEL,
    ROLLOUT_LABEL,
    Cache,
    deployment_view,
    plain,
    route_key,
    service_view,
)
from controller.logs import configure_logging
from controller.measure.addresses import AddressPolicy
from controller.measure.measure import DefaultPrometheus
from controller.measure.prometheus import PrometheusPool
from controller.runtime.reconcile_loop import ReconcileLoop
from controller.runtime.workqueue import Lane

NAMESPACE = "replay"
ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/replay/httproutes"
ROLLOUTS = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{NAMESPACE}/{api.PLURAL}"


class Store:
    """The values one index key holds, one per watched object (a Kopf index's store)."""

    def __init__(self) -> None:
        self.values: dict[Any, Any] = {}

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.values.values()))


class Index(dict[Any, Store]):
    """key -> Store, with each object's value filed under at most one key."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_of: dict[Any, Any] = {}

    def file(self, source: Any, key: Any | None, value: Any) -> None:
        self.drop(source)
        if key is not None:
            self.setdefault(key, Store()).values[source] = value
            self.keys_of[source] = key

    def drop(self, source: Any) -> None:
        old = self.keys_of.pop(source, None)
        if old is not None and old in self:
            self[old].values.pop(source, None)
            if not self[old].values:
                del self[old]


class Watched:
    """The caches, fed by the stand-in's watch the way the operator's Kopf handlers feed theirs."""

    def __init__(self) -> None:
        self.rollouts, self.by_route, self.deployments = Index(), Index(), Index()
        self.services, self.unschedulable, self.httproutes = Index(), Index(), Index()
        self.cache = Cache(rollouts=self.rollouts, rollouts_by_route=self.by_route, deployments=self.deployments,
                           services=self.services, unschedulable=self.unschedulable,
                           routes={"httproutes": self.httproutes})
        self.loop: ReconcileLoop | None = None
        # Seen by the benchmark, not the operator: each rollout's status, and when its route went where.
        self.status: dict[str, dict[str, Any]] = {}
        self.route_at: dict[str, tuple[tuple[int, int], float]] = {}
        self.status_writes: list[float] = []

    def apply(self, event: dict[str, Any]) -> None:
        assert self.loop is not None
        body, kind = event["object"], event["type"]
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        seen = (body.get("kind", ""), *key, meta.get("resourceVersion"))
        labels = meta.get("labels") or {}
        gone = kind == "DELETED"
        if body.get("kind") == api.KIND:
            self.rollouts.file(key, None if gone else key, plain(body))
            self.by_route.file(key, None if gone else route_key(body.get("spec") or {}, key[0]), key)
            if gone:
                self.loop.forget(key)
                return
            action = api.ACTION_ANNOTATION in (meta.get("annotations") or {})
            self.loop.notify(key, seen, action_requested=action)
        elif body.get("kind") == "Deployment":
            view = None if gone else deployment_view(body)
            self.deployments.file(key, (key[0], labels.get(ROLLOUT_LABEL)) if view else None, view)
            if ROLLOUT_LABEL in labels and REVISION_LABEL in labels:
                self.loop.workload_moved((key[0], labels[ROLLOUT_LABEL]), seen)
        elif body.get("kind") == "Service":
            self.services.file(key, None if gone else key, service_view(body))
            if ROLLOUT_LABEL in labels:
                self.loop.notify((key[0], labels[ROLLOUT_LABEL]), seen, lane=Lane.ROUTINE)
        elif body.get("kind") == "HTTPRoute":
            route = ("httproutes", *key)
            self.httproutes.file(route, None if gone else route, plain(body))
            for user in self.cache.users_of_route(route):
                self.loop.notify(user, ("httproutes", *key, meta.get("resourceVersion")))

    def seen(self, event: dict[str, Any]) -> None:
        """What the benchmark reads, in the reader thread: statuses, writes and route weights."""
        body = event["object"]
        name = body["metadata"]["name"]
        if body.get("kind") == api.KIND:
            if event["type"] == "MODIFIED" and body.get("status") != self.status.get(name):
                self.status_writes.append(time.time())
            self.status[name] = body.get("status") or {}
        elif body.get("kind") == "HTTPRoute":
            weights = httproute_weights(body, name)
            if self.route_at.get(name, ((-1, -1), 0.0))[0] != weights:
                self.route_at[name] = (weights, time.perf_counter())


def read_watch(port: int, watched: Watched, events: asyncio.AbstractEventLoop, stopped: threading.Event) -> None:
    HARNESS_THREADS.add(threading.get_native_id())
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /watch HTTP/1.1\r\nHost: plane\r\n\r\n")
        stream = connection.makefile("rb")
        while stream.readline() not in (b"\r\n", b""):
            pass  # the response's headers
        for line in stream:
            if stopped.is_set():
                return
            event = json.loads(line)
            watched.seen(event)
            events.call_soon_threadsafe(watched.apply, event)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# The benchmark's own threads (the driver, the watch reader): their CPU is not the operator's.
HARNESS_THREADS: set[int] = set()


def harness_cpu_seconds() -> float:
    total = 0
    for tid in HARNESS_THREADS:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Peak:
    """The highest VmRSS, sampled every second until stopped."""

    def __init__(self) -> None:
        self.mb = rss_mb()
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.wait(1.0):
            self.mb = max(self.mb, rss_mb())


def last_looks() -> dict[str, float]:
    """Each rollout's last look, from the operator's own gauge."""
    looks = {}
    for family in metrics.LAST_LOOK.collect():
        for sample in family.samples:
            looks[sample.labels["name"]] = sample.value
    return looks


def wait_for(done: Callable[[], bool], timeout: float, what: str, every: float = 1.0) -> float:
    started = time.perf_counter()
    while not done():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
        time.sleep(every)
    return time.perf_counter() - started


class Driver:
    """The user's side: writes to the stand-in, and reads what the watch showed."""

    def __init__(self, port: int, watched: Watched, names: list[str]) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        self.watched = watched
        self.names = names

    def create(self) -> None:
        for name in self.names:
            self.http.post(ROUTES, json=httproute(name)).raise_for_status()
        for name in self.names:
            self.http.post(ROLLOUTS, json=rollout(name, "model:v1", analysed=True)).raise_for_status()

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.http.patch(f"{ROLLOUTS}/{name}", json=body,
                        headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()

    def count(self, ok: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for name in self.names if ok(self.watched.status.get(name, {})))

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = self.http.get("/stats").json()
        return stats


def arrive(driver: Driver) -> dict[str, str]:
    """Every rollout created, until each has its stable Deployment and route (Completed); then memory at rest."""
    n = len(driver.names)
    peak = Peak()
    started = time.perf_counter()
    driver.create()
    created = time.perf_counter() - started
    wait_for(lambda: driver.count(lambda s: s.get("phase") == "Completed") == n, 3600, "every rollout Completed")
    took = time.perf_counter() - started
    peak.stopped.set()
    time.sleep(5)
    before = cpu_seconds()
    time.sleep(20)
    return {"arrive": f"{n} created in {created:.0f} s, all Completed after {took:.0f} s ({n / took:.0f} rollouts/s)",
            "memory": f"at rest {rss_mb():.0f} MB (CPU {100 * (cpu_seconds() - before) / 20:.1f}% of a core); "
                      f"peak while arriving {peak.mb:.0f} MB"}


def first_looks(driver: Driver, cap: float) -> dict[str, str]:
    """Every canary started; the time to the first look at all of them, then to one more look at all.
    Past `cap` seconds the run goes on to its steady window and aborts, and says how far the looks got."""
    n = len(driver.names)
    template = {"spec": {"template": rollout("x", "model:v2")["spec"]["template"]}}
    started = time.perf_counter()
    for name in driver.names:
        driver.patch(name, template)
    wait_for(lambda: driver.count(lambda s: s.get("canaryWeight") == 10) == n, 3600, "every canary at 10%")
    in_canary = time.perf_counter() - started
    try:
        wait_for(lambda: len(last_looks()) >= n, cap, "a look at every rollout", every=2.0)
    except TimeoutError:
        looked = len(last_looks())
        return {"first look": f"every canary at 10% after {in_canary:.0f} s; after {cap:.0f} s (the cap) "
                              f"{looked} of {n} rollouts looked at once, {looked / cap:.1f} first looks/s"}
    first = time.perf_counter() - started
    mark = time.time()
    sweep = wait_for(lambda: sum(1 for t in last_looks().values() if t > mark) >= n, 3600, "a sweep", every=2.0)
    return {"first look": f"every canary at 10% after {in_canary:.0f} s, every rollout looked at after {first:.0f} s; "
                          f"then one more look at all in {sweep:.1f} s (interval {INTERVAL:.0f} s)"}


def steady(driver: Driver, seconds: float) -> dict[str, str]:
    """Looks, CPU, memory, queries and writes over a window after a minute of settling (each look then
    reads a full analysis window, and the first checkpoints are behind)."""
    n, watched = len(driver.names), driver.watched
    time.sleep(60)
    peak = Peak()
    looks: dict[str, list[float]] = {}
    cpu0, harness0, writes0, plane0, wall0 = (cpu_seconds(), harness_cpu_seconds(), len(watched.status_writes),
                                              driver.stats(), time.time())
    while time.time() - wall0 < seconds:
        time.sleep(4.0)
        for name, at in last_looks().items():
            seen = looks.setdefault(name, [])
            if not seen or seen[-1] != at:
                seen.append(at)
    wall = time.time() - wall0
    peak.stopped.set()
    gaps = [b - a for seen in looks.values() for a, b in itertools.pairwise(seen)]
    gaps += [time.time() - seen[-1] for seen in looks.values() if seen]
    plane1 = driver.stats()
    return {"steady": (
        f"look gap p50 {statistics.median(gaps):.1f} s, p99 {percentile(gaps, 0.99):.1f} s; "
        f"CPU {100 * (cpu_seconds() - cpu0) / wall:.0f}% of a core, the operator's threads "
        f"{100 * (cpu_seconds() - cpu0 - harness_cpu_seconds() + harness0) / wall:.0f}%; "
        f"RSS {rss_mb():.0f} MB (peak {peak.mb:.0f} MB); "
        f"Prometheus queries {(plane1['queries'] - plane0['queries']) * INTERVAL / wall:.1f} per interval; "
        f"status writes {(len(watched.status_writes) - writes0) / wall / n:.4f}/s per rollout; "
        f"Events {(plane1['events'] - plane0['events']) / wall:.1f}/s")}


def aborts(driver: Driver, runs: int) -> dict[str, str]:
    """Aborts, one at a time, on random rollouts: written, until the route streamed back is 100% stable."""
    lags = []
    routes = driver.watched.route_at
    for name in random.Random(7).sample(driver.names, min(runs, len(driver.names))):
        begun = time.perf_counter()
        driver.patch(name, {"metadata": {"annotations": {api.ACTION_ANNOTATION: "abort"}}})
        wait_for(lambda name=name: routes.get(name, ((-1, -1), 0.0))[0] == (0, 0), 120,  # type: ignore[misc]
                 f"{name} aborted", every=0.01)
        lags.append(routes[name][1] - begun)
    return {"abort": f"{len(lags)} aborts: p50 {1000 * statistics.median(lags):.0f} ms, "
                     f"p99 {1000 * percentile(lags, 0.99):.0f} ms, max {1000 * max(lags):.0f} ms"}


def shown(figures: dict[str, str]) -> dict[str, str]:
    for what, figure in figures.items():
        print(f"  {what}: {figure}", flush=True)
    return figures


def run(args: argparse.Namespace, port: int) -> dict[str, str]:
    watched = Watched()
    stopped = threading.Event()
    events = asyncio.new_event_loop()
    api_client = metrics.count_requests(client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}")))
    api_client.rest_client.pool_manager.connection_pool_kw["maxsize"] = args.workers

    async def operate() -> None:
        configure_logging()
        loop = ReconcileLoop(api_client, watched.cache, PrometheusPool(asyncio.get_running_loop()),
                             workers=args.workers, default_prometheus=DefaultPrometheus(f"http://127.0.0.1:{port}"),
                             addresses=AddressPolicy(denied=()))
        watched.loop = loop
        with contextlib.suppress(asyncio.CancelledError):
            await loop.run()

    operator = threading.Thread(target=lambda: events.run_until_complete(operate()), daemon=True)
    operator.start()
    wait_for(lambda: watched.loop is not None, 10, "the loop started", every=0.05)
    threading.Thread(target=read_watch, args=(port, watched, events, stopped), daemon=True).start()
    HARNESS_THREADS.add(threading.get_native_id())
    driver = Driver(port, watched, [f"r{index:05d}" for index in range(args.rollouts)])
    print(f"{args.rollouts} rollouts, {args.workers} workers, replayed (benchmarks/replay.py):", flush=True)
    figures: dict[str, str] = {}
    for phase in (arrive, lambda driver: first_looks(driver, args.first_look_cap),
                  lambda driver: steady(driver, args.steady)):
        figures.update(shown(phase(driver)))  # Each as it comes: a 10,000-rollout run is long.
    if args.tracemalloc:
        traced, _ = tracemalloc.get_traced_memory()
        held = f"memory held by Python objects: {traced / 2**20:.0f} MB, by where it was allocated"
        figures[held] = "\n    " + "\n    ".join(
            f"{stat.size / 2**20:7.1f} MB  {stat.traceback}" for stat in
            tracemalloc.take_snapshot().statistics("lineno")[:args.tracemalloc])
        shown({held: figures[held]})
    figures.update(shown(aborts(driver, args.aborts)))
    stopped.set()
    for task in asyncio.all_tasks(events):
        events.call_soon_threadsafe(task.cancel)
    operator.join(30)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rollouts", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steady", type=float, default=60.0)
    parser.add_argument("--aborts", type=int, default=20)
    parser.add_argument("--first-look-cap", type=float, default=3600.0, metavar="SECONDS",
                        help="stop waiting for the first look at every rollout after this long, and go on")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="K",
                        help="after the steady window, print the K places holding the most memory (slows the run)")
    parser.add_argument("--log", type=Path, default=Path("/tmp/replay-operator.log"),
                        help="where the operator's log goes (JSON lines, as in a cluster)")
    args = parser.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start()
    log = args.log.open("w")
    os.dup2(log.fileno(), sys.stderr.fileno())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plane = subprocess.Popen([sys.executable, "-m", "benchmarks.replay_plane", str(port)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert plane.stdout is not None and plane.stdout.readline().strip() == "serving"
        figures = run(args, port)
    finally:
        plane.terminate()
        plane.wait(10)
    print(f"done: {len(figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
