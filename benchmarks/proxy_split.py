"""The share of requests nginx really sent to the candidate at each step, against the weight set.

The e2e world on the sandbox: the operator walks a shadow step and canary steps; nginx serves the
HTTPRoute it writes over the EndpointSlices; the load goes to nginx only. The counts are the model
servers' own (GET /stats of every pod's server), taken 2 s into each step (nginx has reloaded) and
at its end. Prints, per step, the weight (or mirror) set, the share measured and its 95% interval.

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
from e2e.world import e2e_world
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "split-bench"
WEIGHTS = (1, 5, 10, 25, 50)
MIRROR = 20


def _interval(hits: int, total: int) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion."""
    if total == 0:
        return 0.0, 1.0
    z, p = 1.96, hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def _counts(served: dict[str, dict[str, int]], candidate: str) -> tuple[int, int, int]:
    """(live requests in all, live on the candidate, mirrored to the candidate)."""
    live = sum(c["live"] for c in served.values())
    mine = served.get(candidate, {"live": 0, "mirrored": 0})
    return live, mine["live"], mine["mirrored"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rps", type=float, default=100)
    parser.add_argument("--seconds", type=int, default=30, help="length of each step")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    steps: list[dict[str, Any]] = [{"shadow": {"percent": MIRROR, "duration": f"{args.seconds}s"}}]
    steps += [{"canary": {"weight": w, "duration": f"{args.seconds}s"}} for w in WEIGHTS]
    sandbox = Sandbox(name=f"split-{os.getpid()}")
    state = sandbox.up()
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
                start = _counts(world.fleet.served(), candidate)
                def step_over(i: int = index) -> bool:
                    return bool(rollouts.status("scorer").get("currentStep") != i)

                wait_until(step_over, args.seconds * 4, f"the end of step {index + 1}")
                end = _counts(world.fleet.served(), candidate)
                live, on_candidate, mirrored = (b - a for a, b in zip(start, end, strict=True))
                kind = "mirror" if "shadow" in step else "weight"
                hits = mirrored if kind == "mirror" else on_candidate
                low, high = _interval(hits, live)
                rows.append((kind, MIRROR if kind == "mirror" else step["canary"]["weight"], hits, live, low, high))
            world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", 120, "promotion")
    finally:
        sandbox.down()
    print(f"{'set':>12} {'measured at the servers':>26} {'95% interval':>18} {'requests':>9}")
    for kind, percent, hits, live, low, high in rows:
        print(f"{kind:>6} {percent:>4}% {100 * hits / max(live, 1):>25.2f}% {100 * low:>8.2f}-{100 * high:.2f}% "
              f"{live:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
