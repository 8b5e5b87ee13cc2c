"""The share of requests Envoy really sent to the candidate at each step, against the weight set.

The e2e world on the sandbox: the operator walks a shadow step and canary steps; Envoy Gateway
serves the HTTPRoute it writes (its controller reads the route and the EndpointSlices, a real Envoy
serves them); the load goes to that Envoy only. A canary's share is counted at the model servers
(GET /stats of every pod's server). Envoy does not mark its mirrored copies, so the servers cannot
tell them from live requests: the mirrored share is Envoy's own count of its mirror cluster, over the
live requests the servers answered. Counts are taken 2 s into each step and at its end (the last
read before the step ended: the mirror's cluster goes with the mirror). Prints, per
step, the weight (or mirror) set, the share measured and its 95% interval.

    python -m benchmarks.proxy_split [--rps 100] [--seconds 30]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devkit.sandbox.cluster import Sandbox
from e2e.harness import Rollouts, wait_until
from e2e.world import World, e2e_world
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "split-bench"
WEIGHTS = (1, 5, 10, 25, 50)
MIRRORS = (10, 20, 50)


def _interval(hits: float, total: float) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion."""
    if total == 0:
        return 0.0, 1.0
    z, p = 1.96, hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def _counts(world: World, candidate: str) -> tuple[float, float, float]:
    """(live requests in all, live on the candidate, mirrored to the candidate). The servers answered live
    requests and mirrored copies alike; Envoy counted the copies."""
    answered = {revision: c["live"] + c["mirrored"] for revision, c in world.fleet.served().items()}
    mirrored = world.gateway.mirrored("scorer")
    return sum(answered.values()) - mirrored, answered.get(candidate, 0) - mirrored, mirrored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rps", type=float, default=100)
    parser.add_argument("--seconds", type=int, default=30, help="length of each step")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    steps: list[dict[str, Any]] = [{"shadow": {"percent": m, "duration": f"{args.seconds}s"}} for m in MIRRORS]
    steps += [{"canary": {"weight": w, "duration": f"{args.seconds}s"}} for w in WEIGHTS]
    sandbox = Sandbox(name=f"split-{os.getpid()}")
    state = sandbox.up(gateway="envoy")
    rows = []
    try:
        api_client = api_client_from_kubeconfig(state.kubeconfig)
        client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        with tempfile.TemporaryDirectory() as workdir, e2e_world(api_client, NAMESPACE, Path(state.kubeconfig),
                                                                 Path(workdir), rps=args.rps) as world:
            world.deploy(steps, guardrails=[])
            world.roll_out("good-rebuild")
            rollouts: Rollouts = world.rollouts
            for index, step in enumerate(steps):
                def in_step(i: int = index) -> dict[str, Any] | None:
                    status = rollouts.status("scorer")
                    return status if status.get("currentStep") == i and status.get("candidateReady") else None

                status = wait_until(in_step, args.seconds * 4, f"step {index + 1}")
                candidate = status["candidateRevision"]
                time.sleep(2)
                start = _counts(world, candidate)
                # The last counts read while the step still runs: Envoy's mirror cluster goes with the mirror.
                last = [start]

                def step_over(i: int = index, seen: list[tuple[float, float, float]] = last,
                              revision: str = candidate) -> bool:
                    if rollouts.status("scorer").get("currentStep") != i:
                        return True
                    seen.append(_counts(world, revision))
                    return False

                wait_until(step_over, args.seconds * 4, f"the end of step {index + 1}")
                live, on_candidate, mirrored = (b - a for a, b in zip(start, last[-1], strict=True))
                kind = "mirror" if "shadow" in step else "weight"
                hits = mirrored if kind == "mirror" else on_candidate
                low, high = _interval(hits, live)
                set_to = step["shadow"]["percent"] if kind == "mirror" else step["canary"]["weight"]
                rows.append((kind, set_to, hits, live, low, high))
            world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", 120, "promotion")
    finally:
        sandbox.down()
    print(f"{'set':>12} {'measured':>26} {'95% interval':>18} {'requests':>9}")
    for kind, percent, hits, live, low, high in rows:
        print(f"{kind:>6} {percent:>4}% {100 * hits / max(live, 1):>25.2f}% {100 * low:>8.2f}-{100 * high:.2f}% "
              f"{live:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
