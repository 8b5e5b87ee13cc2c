"""Live latency with and without a shadow step's comparator, healthy, slow, overloaded and dead.

The e2e world on the sandbox (Envoy Gateway in the data path, the simulator's model servers, the
comparator run by the test kit as its pod), 40 req/s of live load to Envoy. Each phase is a
rollout's first step, a shadow step mirroring 100%, measured for `--seconds` once it runs; the
live latency is what the load generator's clients saw of the stable's answers:
- `mirror`: no compare (the mirror goes to the candidate itself), the baseline;
- `compare`: a healthy candidate compared;
- `slow`: the candidate answers in 900 ms: the comparator waits on it (cut at 5 s);
- `overloaded`: four times more mirrored requests than the comparator may compare (maxRequestsPerSecond
  10, its default, against 40 mirrored a second): the rest counted and dropped;
- `dead`: the comparator's process held down: Envoy mirrors to an address nobody answers.

    python -m benchmarks.compare_live [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from devkit.sandbox.cluster import Sandbox
from e2e.world import World, e2e_world
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "compare-live"
COMPARE: dict[str, Any] = {"format": "json", "paths": ["$.prediction"], "absoluteTolerance": 1,
                           "allowSideEffects": True}
ALL = {**COMPARE, "maxRequestsPerSecond": 100}
# phase -> (the candidate's image, a new template each time, and its compare, or None)
PHASES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "mirror": ("good-rebuild", None),
    "compare": ("better", ALL),
    "slow": ("sluggish", ALL),
    "overloaded": ("slow", COMPARE),
    "dead": ("cold", ALL),
}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def phase(world: World, name: str, seconds: float, image: str, compare: dict[str, Any] | None) -> str:
    shadow: dict[str, Any] = {"percent": 100, "duration": "1h"}
    if compare is not None:
        shadow["compare"] = compare
    world.rollouts.patch("scorer", {"spec": {"strategy": {"steps": [{"shadow": shadow}]}}})
    world.roll_out(image)
    world.rollouts.wait_status("scorer", lambda s: s.get("mirrorPercent") == 100 and bool(s.get("stepStartedAt")), 300,
                               f"{name}: the shadow step running", progress=world.fleet.activity)
    if compare is not None:
        assert world.comparators is not None
        comparators = world.comparators
        world.rollouts.wait_status("scorer", lambda _: comparators.admin_url() is not None, 300,
                                   f"{name}: the comparator running")
    assert world.comparators is not None
    with world.comparators.outage() if name == "dead" else nullcontext():
        started = time.monotonic()
        time.sleep(seconds)  # a benchmark's measuring window, not a wait for a condition
        live = world.load.latencies(started)
    world.rollouts.act("scorer", "abort")
    world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", 120, f"{name}: aborted")
    return (f"{name:>10}: live p50 {1000 * statistics.median(live):.1f} ms, p99 {1000 * _quantile(live, 0.99):.1f} ms "
            f"over {len(live)} answers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sandbox = Sandbox(name=f"compare-live-{os.getpid()}")
    state = sandbox.up(gateway="envoy")
    try:
        api_client = api_client_from_kubeconfig(state.kubeconfig)
        client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        with tempfile.TemporaryDirectory() as workdir, e2e_world(api_client, NAMESPACE, Path(state.kubeconfig),
                                                                 Path(workdir), rps=40) as world:
            world.deploy([{"shadow": {"percent": 100, "duration": "1s"}}], guardrails=[])
            for name, (image, compare) in PHASES.items():
                print(phase(world, name, args.seconds, image, compare), flush=True)
    finally:
        sandbox.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
