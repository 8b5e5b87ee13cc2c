"""Static shards on one sandbox: memory per process, setup time and abort lag for 1, 2 and 4 shards.

N ModelRollouts (Gateway API routing, a 10-hour canary step at 10%) are created once and brought
into their canary by one operator that watches everything. Then, for each shard count S in turn,
the processes before are stopped and S processes start, one per shard (`--shards S --shard K`;
for S = 1 the reference: one process without `--shard`, which watches every rollout). For each S
it prints:

- setup: from the processes' start until every rollout carries its label for S, and each process
  has reconciled as many rollouts as it watches (its own /metrics);
- each process's rollouts watched (`modelrollout_rollouts_watched`) and resident memory (VmRSS)
  after a quiet 20 s;
- the abort lag: an abort written with the Python client until a watch sees the HTTPRoute 100%
  stable, 20 random rollouts (each aborted once over the whole run).

    python -m benchmarks.shards [--rollouts 1000] [--counts 1,2,4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from devkit.sandbox.cluster import Sandbox
from devkit.sandbox.nodes import DEFAULT_NODES
from devkit.sandbox.processes import free_port
from e2e import harness
from e2e.harness import wait_until
from kubernetes import client

from benchmarks.scale import BENCH_NODES, NAMESPACE, Bench, Operator, RouteWatch, percentile
from controller import api

SHARD_LABEL = f"{api.GROUP}/shard"


def shard_of(name: str, shards: int) -> int:
    """The documented assignment, written here again: sha256 of "namespace/name", first 8 bytes, mod shards."""
    return int.from_bytes(hashlib.sha256(f"{NAMESPACE}/{name}".encode()).digest()[:8], "big") % shards


def gauge(operator: Operator, name: str) -> float:
    text = httpx.get(operator.metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def start(kubeconfig: str, workdir: Path, shards: int, shard: int | None) -> Operator:
    port = free_port()
    args = ["--identity", f"shard-{shard}", "--shards", str(shards)]
    if shard is not None:
        args += ["--shard", str(shard)]
    process = harness.start_operator(kubeconfig, NAMESPACE, workdir / f"operator-{shards}-{shard}.log", *args,
                                     env={"MODELROLLOUT_METRICS_PORT": str(port)})
    operator = Operator(process, f"http://127.0.0.1:{port}/metrics")
    wait_until(lambda: _serving(operator), 60, "the operator serves /metrics", every=0.2)
    return operator


def _serving(operator: Operator) -> bool:
    try:
        gauge(operator, "modelrollout_rollouts_watched")
    except httpx.HTTPError:
        return False
    return True


def labelled(bench: Bench, names: list[str], shards: int) -> bool:
    listing = bench.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL)
    labels = {item["metadata"]["name"]: (item["metadata"].get("labels") or {}).get(SHARD_LABEL)
              for item in listing["items"]}  # type: ignore[index]
    return all(labels.get(name) == f"{shard_of(name, shards)}-of-{shards}" for name in names)


def run_count(bench: Bench, routes: RouteWatch, kubeconfig: str, workdir: Path, shards: int, names: list[str],
              aborted: set[str], rng: random.Random, static: bool) -> str:
    started = time.perf_counter()
    operators = [start(kubeconfig, workdir, shards, shard if static else None) for shard in range(shards)]
    try:
        if static:
            wait_until(lambda: labelled(bench, names, shards), 600, "every rollout labelled", every=2.0)

        def reconciled() -> bool:
            return all(gauge(op, "modelrollout_rollouts_watched") > 0 and
                       gauge(op, 'modelrollout_reconciles_total{outcome="ok"}')
                       >= gauge(op, "modelrollout_rollouts_watched") for op in operators)

        wait_until(reconciled, 600, "each process reconciled what it watches", every=1.0)
        setup = time.perf_counter() - started
        time.sleep(20)
        watched = [gauge(op, "modelrollout_rollouts_watched") for op in operators]
        rss = [op.rss_mb() for op in operators]
        lags = []
        for name in rng.sample([name for name in names if name not in aborted], 20):
            aborted.add(name)
            begun = bench.abort(name)
            lags.append(routes.wait(name, (0, 0), timeout=60) - begun)
    finally:
        for op in operators:
            op.process.terminate()
        for op in operators:
            op.process.wait(30)
    kind = f"{shards} static shard{'s' if shards > 1 else ''}" if static else "1 process, every rollout"
    return (f"{kind}: setup {setup:.0f} s; watched {'/'.join(f'{w:.0f}' for w in watched)}; "
            f"RSS {'/'.join(f'{m:.0f}' for m in rss)} MB (max {max(rss):.0f}); abort lag p50 "
            f"{1000 * statistics.median(lags):.0f} ms, p99 {1000 * percentile(lags, 0.99):.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--counts", default="1,2,4")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sandbox = Sandbox(name=f"shards-{os.getpid()}")
    sandbox.up(node_shapes=DEFAULT_NODES + BENCH_NODES, ready_timeout=180)
    workdir = Path(tempfile.mkdtemp(prefix="shards-"))
    rng = random.Random(7)
    try:
        kubeconfig = str(sandbox.kubeconfig)
        bench = Bench(kubeconfig)
        client.CoreV1Api(bench.api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        routes = RouteWatch(bench.api)
        names = [f"m{index:05d}" for index in range(args.rollouts)]
        first = start(kubeconfig, workdir, 1, None)
        try:
            began = time.perf_counter()
            bench.add(names)
            bench.wait_all(names, lambda s: s.get("phase") == "Completed", 60 + args.rollouts, "deployed")
            bench.start_canaries(names)
            bench.wait_all(names, lambda s: s.get("canaryWeight") == 10, 60 + args.rollouts, "first step")
            print(f"{args.rollouts} rollouts in a canary step after {time.perf_counter() - began:.0f} s; "
                  f"logs in {workdir}", flush=True)
        finally:
            first.process.terminate()
            first.process.wait(30)
        aborted: set[str] = set()
        for count in (int(n) for n in args.counts.split(",")):
            line = run_count(bench, routes, kubeconfig, workdir, count, names, aborted, rng, static=count > 1)
            print(line, flush=True)
        routes.stopped.set()
    finally:
        sandbox.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
