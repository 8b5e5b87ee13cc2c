"""From a template change on a full GPU cluster to InsufficientCapacity in the rollout's status, and
what capacity.policy swap takes on the same full cluster.

The sandbox's two kwok GPU nodes (2 nvidia.com/gpu each) are filled by the stable (2 pods of 2 GPUs);
each round changes the template (a new image) and times, from the patch, the first status that names
the new candidate with InsufficientCapacity True. Then a swap rollout (4 stable pods of 1 GPU,
minAvailable 2; canary 25%, canary 50%, pause): each round times the patch to the pause at 50% (the
stable shrunk twice, the candidate's pods Ready on the freed GPUs), then an abort to the stable's four
pods Ready again. The operator runs as its own process with the capacity check (cluster-wide installs
have it on). Prints each round and the medians.

    python -m benchmarks.capacity [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from devkit.sandbox.cluster import Sandbox
from e2e.harness import Rollouts, httproute, operator_process, rollout_body, with_image
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "capacity-bench"


def _held(status: dict[str, Any], image_revision: str | None) -> bool:
    condition = next((c for c in status.get("conditions", []) if c["type"] == "InsufficientCapacity"), None)
    return (condition is not None and condition["status"] == "True"
            and status.get("candidateRevision") not in (None, image_revision))


def _held_now(rollouts: Rollouts, image_revision: str | None) -> bool:
    return _held(rollouts.status("full"), image_revision)


def _ready(api_client: client.ApiClient, name: str) -> tuple[int, int]:
    found = client.AppsV1Api(api_client).read_namespaced_deployment(name, NAMESPACE)
    assert found.spec is not None and found.status is not None
    return int(found.spec.replicas or 0), int(found.status.ready_replicas or 0)


def _since(started: float, probe: Callable[[], bool], what: str, timeout: float = 120) -> float:
    """Seconds from `started` until `probe` holds, looking every 20 ms (harness.wait_for looks every
    200 ms, too coarse for figures of tens of milliseconds)."""
    while not probe():
        if time.monotonic() > started + timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)
    return time.monotonic() - started


def _paused_at_half(status: dict[str, Any]) -> bool:
    return status.get("phase") == "Paused" and status.get("canaryWeight") == 50


def swap_rounds(api_client: client.ApiClient, rollouts: Rollouts, rounds: int) -> tuple[list[float], list[float]]:
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("swap"))
    body = rollout_body("swap", [{"canary": {"weight": 25}}, {"canary": {"weight": 50}}, {"pause": {}}],
                        {"gatewayAPI": {"httpRoute": "swap"}}, image="scorer:v0", gpus=1, replicas=4)
    body["spec"]["strategy"]["capacity"] = {"policy": "swap", "minAvailable": 2}
    rollouts.create(body)
    stable = f"swap-{rollouts.wait_status('swap', lambda s: s.get('phase') == 'Completed', 60)['stableRevision']}"
    to_half, to_whole = [], []
    for round_ in range(1, rounds + 1):
        started = time.monotonic()
        rollouts.patch("swap", with_image(body, f"scorer:w{round_}", gpus=1))
        to_half.append(_since(started, lambda: _paused_at_half(rollouts.status("swap")), "the pause at 50%"))
        started = time.monotonic()
        rollouts.act("swap", "abort")
        to_whole.append(_since(started, lambda: _ready(api_client, stable) == (4, 4), "the stable whole again"))
        print(f"swap round {round_}: to 50% {to_half[-1] * 1000:.0f} ms, abort to 4/4 stable "
              f"{to_whole[-1] * 1000:.0f} ms", flush=True)
    return to_half, to_whole


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sandbox = Sandbox(name=f"capacity-{os.getpid()}")
    state = sandbox.up()
    took: list[float] = []
    try:
        api_client = api_client_from_kubeconfig(state.kubeconfig)
        client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        rollouts = Rollouts(api_client, NAMESPACE)
        rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("full"))
        body = rollout_body("full", [{"canary": {"weight": 20, "duration": "1h"}}],
                            {"gatewayAPI": {"httpRoute": "full"}}, image="scorer:v0", gpus=2, replicas=2)
        with tempfile.TemporaryDirectory() as workdir, operator_process(Path(state.kubeconfig), NAMESPACE,
                                                                        Path(workdir) / "operator.log",
                                                                        "--check-capacity"):
            rollouts.create(body)
            rollouts.wait_status("full", lambda s: s.get("phase") == "Completed", 60, "the stable on every GPU")
            for round_ in range(1, args.rounds + 1):
                previous = rollouts.status("full").get("candidateRevision")
                started = time.monotonic()
                rollouts.patch("full", with_image(body, f"scorer:v{round_}", gpus=2))
                took.append(_since(started, partial(_held_now, rollouts, previous),
                                   f"round {round_}: InsufficientCapacity", 60))
                print(f"round {round_}: {took[-1] * 1000:.0f} ms", flush=True)
            rollouts.delete("full")
            apps = client.AppsV1Api(api_client)
            _since(time.monotonic(), lambda: "full" not in rollouts.names(), "the rollout deleted")
            # The route still names full-stable, so the stable outlives the rollout: it goes by hand.
            apps.delete_collection_namespaced_deployment(NAMESPACE, label_selector="rollouts.mlops.dev/rollout=full")
            _since(time.monotonic(), lambda: not apps.list_namespaced_deployment(NAMESPACE).items, "the GPUs freed")
            to_half, to_whole = swap_rounds(api_client, rollouts, args.rounds)
    finally:
        sandbox.down()
    print(f"template change on a full cluster to InsufficientCapacity: median {statistics.median(took) * 1000:.0f} ms, "
          f"max {max(took) * 1000:.0f} ms ({len(took)} rounds)")
    print(f"swap on a full cluster, template change to 50% on freed GPUs: median "
          f"{statistics.median(to_half) * 1000:.0f} ms, max {max(to_half) * 1000:.0f} ms; abort to the stable's 4 pods "
          f"Ready: median {statistics.median(to_whole) * 1000:.0f} ms, max {max(to_whole) * 1000:.0f} ms "
          f"({len(to_half)} rounds; kwok pods start at once, so this is the operator and the control plane)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
