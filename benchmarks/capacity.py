"""From a template change on a full GPU cluster to InsufficientCapacity in the rollout's status.

The sandbox's two kwok GPU nodes (2 nvidia.com/gpu each) are filled by the stable (2 pods of 2 GPUs);
each round changes the template (a new image) and times, from the patch, the first status that names
the new candidate with InsufficientCapacity True. The operator runs as its own process with the
capacity check (cluster-wide installs have it on). Prints each round and the median.

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
from pathlib import Path
from typing import Any

from e2e.harness import Rollouts, httproute, operator_process, rollout_body, with_image
from kubernetes import client

from controller.kubeclient import api_client_from_kubeconfig
from controller.sandbox.cluster import Sandbox

NAMESPACE = "capacity-bench"


def _held(status: dict[str, Any], image_revision: str | None) -> bool:
    condition = next((c for c in status.get("conditions", []) if c["type"] == "InsufficientCapacity"), None)
    return (condition is not None and condition["status"] == "True"
            and status.get("candidateRevision") not in (None, image_revision))


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
                deadline = started + 60
                while not _held(rollouts.status("full"), previous):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"round {round_}: no InsufficientCapacity in 60 s")
                    time.sleep(0.02)
                took.append(time.monotonic() - started)
                print(f"round {round_}: {took[-1] * 1000:.0f} ms", flush=True)
    finally:
        sandbox.down()
    print(f"template change on a full cluster to InsufficientCapacity: median {statistics.median(took) * 1000:.0f} ms, "
          f"max {max(took) * 1000:.0f} ms ({len(took)} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
