"""`modelrollout demo`: a live rollout on the local sandbox, then an automatic rollback of a bad model.

Everything is real except the pods' containers: etcd, kube-apiserver, scheduler and kwok run
the cluster; one model-server process per pod serves HTTP on the pod's address (in a network
namespace of its own); Prometheus scrapes them every second; the operator decides from those
metrics; Envoy Gateway serves the live HTTPRoute (its controller reads the route and the
EndpointSlices, and a real Envoy serves them), and the load goes to that Envoy only.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devkit.sandbox.build import ensure_binaries
from devkit.sandbox.cluster import Sandbox
from devkit.sandbox.errors import SandboxError
from kubernetes import client

from controller import api
from controller.kube.client import api_client_from_kubeconfig
from e2e.harness import httproute_state
from e2e.world import World, e2e_world

NAMESPACE = "demo"
STEPS: list[dict[str, Any]] = [
    {"shadow": {"percent": 100, "duration": "10s"}},
    {"canary": {"weight": 20, "duration": "10s"}},
    {"abTest": {"weight": 50, "maxDuration": "3m", "minDuration": "5s", "metric": "conversion",
                "minimumDetectableEffect": 0.05, "onInconclusive": "promote"}},
]
GUARDRAILS = [
    {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.05},
    {"name": "p99-latency", "template": "latencyP99", "relativeToStable": 1.2, "failureLimit": 2,
     "during": ["canary", "abTest"]},
    {"name": "prediction-drift", "template": "predictionPSI", "max": 0.5, "during": ["shadow"]},
]


def _line(world: World) -> str:
    status = world.status()
    weight, mirror = httproute_state(world.rollouts, "scorer")
    analysis = status.get("analysis", {})
    ab = analysis.get("abTest")
    detail = (f"A/B {ab.get('verdict')} samples {ab.get('samples')}/{ab.get('samplesNeeded')}"
              if ab and ab.get("samplesNeeded") else analysis.get("reason", ""))
    return (f"{status.get('phase', ''):<12} step {status.get('stepLabel') or '-':<4} route {weight:>3}%/"
            f"mirror {mirror:>3}%  {status.get('verdict') or '':<16} {detail[:70]}")


def _print_served(world: World) -> None:
    """What each revision's model servers answered: live requests and mirrored copies alike (Envoy does not
    mark its copies; it counts them in the mirror's own cluster, which goes with the shadow step)."""
    for revision, counts in sorted(world.fleet.served().items()):
        print(f"    revision {revision}: answered {counts['live'] + counts['mirrored']} requests")


def _follow(world: World, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        line = _line(world)
        if line != last:
            print(f"  {time.strftime('%H:%M:%S')}  {line}", flush=True)
            last = line
        status = world.status()
        if done(status):
            return status
        time.sleep(1)
    raise TimeoutError("the demo rollout did not finish in time")


def run_demo(keep: bool = False) -> int:
    """`modelrollout demo`: the sandbox's errors are told, not raised."""
    try:
        return _run_demo(keep)
    except SandboxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run_demo(keep: bool) -> int:
    if os.geteuid() != 0:
        print("error: the demo needs root: its model servers get a pod network of their own, a network namespace "
              "(`ip netns`) that only root may create. Run it as root, e.g. `sudo bash scripts/demo.sh`.",
              file=sys.stderr)
        return 1
    # A name of its own: two people on one machine each get their own sandbox, and neither deletes the other's.
    sandbox = Sandbox(name=f"demo-{os.getpid()}")
    print(f"==> starting the sandbox {sandbox.name} (etcd, kube-apiserver, controller-manager, scheduler, kwok, "
          "GPU nodes, Envoy Gateway)")
    state = sandbox.up(gateway="envoy")
    try:
        # `sandbox up` installed the ModelRollout CRD and waited until it is Established.
        return demo_on(Path(state.kubeconfig), keep)
    finally:
        if not keep:
            sandbox.down()


def demo_on(kubeconfig: Path, keep: bool) -> int:
    """The demo's two rollouts on the cluster of `kubeconfig` (the sandbox, or kind), whose CRDs and
    fake GPU nodes are in place."""
    api_client = api_client_from_kubeconfig(kubeconfig)
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NAMESPACE}})  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as workdir, e2e_world(api_client, NAMESPACE, kubeconfig,
                                                             Path(workdir), rps=40) as world:
        print(f"==> Prometheus at {world.prometheus.url}, Envoy at {world.gateway.url}; operator, model servers "
              "and load running")
        first = world.deploy(STEPS, guardrails=GUARDRAILS)
        print("==> 1. rolling out a better model: shadow -> canary -> A/B test on conversions")
        world.roll_out("better")
        good = _follow(world, lambda s: s.get("phase") == "RolledBack" or (
            s.get("phase") == "Completed" and s.get("stableRevision") != first["stableRevision"]), 300)
        print(f"    -> {good['phase']}: {good.get('message')}")
        _print_served(world)

        print("==> 2. rolling out a model that starts failing 40% of requests during its canary")
        world.body["spec"]["strategy"]["steps"] = [{"canary": {"weight": 30, "duration": "2m"}}]
        world.rollouts.patch("scorer", {"spec": {"strategy": world.body["spec"]["strategy"]}})
        world.roll_out("good-rebuild")
        canary = _follow(world, lambda s: s.get("canaryWeight") == 30 and s.get("phase") == "Progressing"
                         and s.get("analysis", {}).get("verdict") == "Pass", 120)
        world.fleet.set_knobs(canary["candidateRevision"], error_rate=0.4)
        print("    fault injected into the candidate's model server")
        bad = _follow(world, lambda s: s.get("phase") == "RolledBack", 120)
        print(f"    -> {bad['phase']}: {bad.get('message')}")
        _print_served(world)
        if keep:
            kubectl = ensure_binaries().kubectl
            print(f"\n{kubectl} --kubeconfig {kubeconfig} -n {NAMESPACE} describe {api.SINGULAR} scorer")
            print("==> --keep: everything stays up for 30 minutes (Ctrl-C ends it)")
            time.sleep(1800)
        else:
            print("\n==> done; the sandbox goes now. `bash scripts/demo.sh --keep` keeps it up to look around.")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo("--keep" in sys.argv))
