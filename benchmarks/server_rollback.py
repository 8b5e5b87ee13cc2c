"""Fault to rollback with a real model server we did not write, through Envoy Gateway.

- `--server mlserver`: MLServer 1.7.1 serves a scikit-learn stable and a candidate whose model rejects
  inputs with a negative last feature (it raises; the server is not modified). Errors are MLServer's
  own failure counter (`profile: mlserver`).
- `--server kserve`: KServe 0.21's Python server; the candidate's model raises on a negative last
  feature too. KServe counts no failures: the errors are Envoy's, per backend (`gatewayProfile: envoy`).

The load goes to Envoy only. The fault is a shift in the inputs: from a moment on, 10% of them have
a negative last feature, which the candidate's own model fails. The clock runs from that moment
until the route (the HTTPRoute) is 100% stable again. Then the inputs are clean again and the
rollout is retried.

    python -m benchmarks.server_rollback [--server mlserver|kserve] [--runs 5] [--weight 10]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit.sandbox.cluster import Sandbox
from e2e.harness import httproute_state, wait_until
from e2e.real_servers import KServeRecipe, MLServerRecipe, ModelVersion
from e2e.world import e2e_world
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "server-bench"
MODELS = {"scorer:mls-good": ModelVersion("scorer"),
          "scorer:mls-picky": ModelVersion("scorer", reject_negative=True)}
# KServe's candidate fails below 0 too: only the shifted rows carry a negative last feature.
KSERVE = {"scorer:ks-good": float("-inf"), "scorer:ks-picky": 0.0}


@dataclass(frozen=True)
class Server:
    images: tuple[str, str]  # stable, candidate
    load_path: str
    analysis: dict[str, Any]
    payload: Callable[[list[float]], dict[str, Any]]


SERVERS = {
    "mlserver": Server(("mls-good", "mls-picky"), "/v2/models/scorer/infer", {"profile": "mlserver"},
                       lambda row: {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": row}]}),
    "kserve": Server(("ks-good", "ks-picky"), "/v1/models/scorer:predict",
                     {"profile": "kserve", "gatewayProfile": "envoy"}, lambda row: {"instances": [row]}),
}


class Inputs:
    """The load's rows; `shifted` makes 10% of them carry a negative last feature."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.shifted = threading.Event()

    def __call__(self, rng: random.Random) -> dict[str, Any]:
        row = [round(rng.gauss(0, 1), 4) for _ in range(3)]
        last = abs(rng.gauss(0, 1))
        row.append(round(-last if self.shifted.is_set() and rng.random() < 0.1 else last, 4))
        return self.server.payload(row)


def recipe(name: str, workdir: Path) -> Any:
    if name == "mlserver":
        return MLServerRecipe(MODELS, "scorer").prepare(workdir)
    return KServeRecipe(KSERVE, "scorer").prepare()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=sorted(SERVERS), default="mlserver")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--weight", type=int, default=10)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = SERVERS[args.server]
    sandbox = Sandbox(name=f"{args.server}-{os.getpid()}")
    state = sandbox.up(gateway="envoy")
    seconds: list[float] = []
    inputs = Inputs(server)
    try:
        api_client = api_client_from_kubeconfig(state.kubeconfig)
        client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        with tempfile.TemporaryDirectory() as models, tempfile.TemporaryDirectory() as workdir, e2e_world(
                api_client, NAMESPACE, Path(state.kubeconfig), Path(workdir), rps=40,
                recipe_for_image=recipe(args.server, Path(models)).for_image,
                load_path=server.load_path, payload=inputs) as world:
            world.deploy([{"canary": {"weight": args.weight, "duration": "1h"}}], image=f"scorer:{server.images[0]}",
                         guardrails=[{"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.02}],
                         **server.analysis)
            world.roll_out(server.images[1])
            for run in range(args.runs):
                world.rollouts.wait_status(
                    "scorer", lambda s: s.get("canaryWeight") == args.weight
                    and s.get("analysis", {}).get("verdict") == "Pass", 180, "a measured, healthy canary")
                inputs.shifted.set()
                broke = time.monotonic()
                wait_until(lambda: httproute_state(world.rollouts, "scorer") == (0, 0), 300, f"rollback {run}")
                took = time.monotonic() - broke
                seconds.append(took)
                print(f"run {run + 1}: {took:.1f} s from the input shift to 100% stable", flush=True)
                world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", 30, "RolledBack")
                inputs.shifted.clear()
                world.rollouts.act("scorer", "retry")
    finally:
        sandbox.down()
    print(f"fault to rollback through Envoy Gateway, {args.server}, {args.weight}% canary, {len(seconds)} runs: "
          f"p50 {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
