"""Leader failover: SIGKILL the replica holding the Lease; how long until the standby holds it, and
until an abort written at the moment of the kill is on the route.

`--rollouts N` rollouts (default 200) are first brought to a 10-hour canary step at 10%. Each round
starts a fresh standby beside the leader, waits until it serves its /metrics (its caches are
syncing), SIGKILLs the leader, writes an abort on one rollout at once, and times until the Lease
names the standby and until that rollout's HTTPRoute (read by a watch here) is 100% stable. The new
leader takes the rollouts with an action waiting before the rest of its shard, so the abort should
land within the lease (15 s) + 2 s. Prints each round, the p50 and the max.

    python -m benchmarks.failover [--kills 10] [--rollouts 200]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from devkit.sandbox.cluster import Sandbox
from devkit.sandbox.nodes import DEFAULT_NODES
from devkit.sandbox.processes import free_port
from e2e.harness import start_operator, wait_until
from kubernetes import client

from benchmarks.scale import BENCH_NODES, NAMESPACE, Bench, RouteWatch
from controller.kube.client import api_client_from_kubeconfig


def start(kubeconfig: str, identity: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = start_operator(kubeconfig, NAMESPACE, log, "--identity", identity,
                             env={"MODELROLLOUT_METRICS_PORT": str(port)})
    return process, port




class Leases:
    def __init__(self, api: client.ApiClient) -> None:
        self.leases = client.CoordinationV1Api(api)

    def holder(self) -> str | None:
        try:
            lease = self.leases.read_namespaced_lease("modelrollout", NAMESPACE)
        except client.ApiException:
            return None
        return lease.spec.holder_identity if lease.spec else None


def serving(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def canaries(bench: Bench, routes: RouteWatch, count: int) -> list[str]:
    names = [f"f{index:04d}" for index in range(count)]
    bench.add(names)
    bench.wait_all(names, lambda s: s.get("phase") == "Completed", 60 + count, "deployed")
    bench.start_canaries(names)
    for name in names:
        routes.wait(name, (10, 0), timeout=60 + count)
    print(f"{count} rollouts in a canary step at 10%", flush=True)
    return names


def kill_rounds(kubeconfig: str, workdir: Path, kills: int, names: list[str], bench: Bench, routes: RouteWatch,
                leases: Leases, processes: list[subprocess.Popen[bytes]]) -> tuple[list[float], list[float]]:
    """(kill -> the standby holds the Lease, kill -> the abort written at the kill is on the route)."""
    leader = processes[-1]
    took, aborted = [], []
    for round_ in range(1, kills + 1):
        identity = f"r{round_}"
        standby, port = start(kubeconfig, identity, workdir / f"{identity}.log")
        processes.append(standby)
        wait_until(lambda port=port: serving(port), 60, f"{identity} up")  # type: ignore[misc]
        victim = names[round_ % len(names)] if names else None
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        killed = time.perf_counter()
        if victim is not None:
            bench.abort(victim)
        wait_until(lambda identity=identity: leases.holder() == identity, 60,  # type: ignore[misc]
                   f"{identity} takes over", every=0.05)
        took.append(time.perf_counter() - killed)
        line = f"kill {round_:>2}: standby {identity} holds the lease after {took[-1]:.1f}s"
        if victim is not None:
            aborted.append(routes.wait(victim, (0, 0), timeout=120) - killed)
            line += f", the abort written at the kill is on the route after {aborted[-1]:.1f}s"
        print(line, flush=True)
        leader = standby
    return took, aborted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rollouts", type=int, default=200)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the sandbox and the operators are stopped by the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sandbox = Sandbox(name=f"failover-{os.getpid()}")
    sandbox.up(node_shapes=DEFAULT_NODES + BENCH_NODES, ready_timeout=180)
    workdir = Path(tempfile.mkdtemp(prefix="failover-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        kubeconfig = str(sandbox.kubeconfig)
        api = api_client_from_kubeconfig(kubeconfig)
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        leases = Leases(api)
        processes.append(start(kubeconfig, "r0", workdir / "r0.log")[0])
        wait_until(lambda: leases.holder() == "r0", 60, "first leader")
        bench, routes = Bench(kubeconfig), RouteWatch(api)
        names = canaries(bench, routes, args.rollouts)
        took, aborted = kill_rounds(kubeconfig, workdir, args.kills, names, bench, routes, leases, processes)
        print(f"failover p50 {statistics.median(took):.1f}s, max {max(took):.1f}s over {len(took)} kills "
              f"(lease 15 s, retry every 2 s)")
        if aborted:
            print(f"kill -> abort on the route p50 {statistics.median(aborted):.1f}s, max {max(aborted):.1f}s "
                  f"with {args.rollouts} rollouts (goal: lease 15 s + 2 s)")
        routes.stopped.set()
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(15)
        sandbox.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
