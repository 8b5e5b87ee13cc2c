"""Sandbox figures: cold build cost, warm start until nodes are Ready, PATCH round-trip, memory.

    python -m benchmarks.sandbox            # warm figures + the recorded cold build
    python -m benchmarks.sandbox --cold     # also rebuild everything from scratch (15+ minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devkit.sandbox import build
from devkit.sandbox.cluster import Sandbox
from devkit.sandbox.processes import read_pids
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig


def _rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cold_build() -> None:
    """Build every component into empty caches (module cache kept: downloads are not the build)."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as gocache:
        env = dict(os.environ, MODELROLLOUT_CACHE=cache, GOCACHE=gocache)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "controller", "sandbox", "build"], env=env, check=True)
        print(f"cold build (fresh GOCACHE): {time.monotonic() - started:.0f} s")
        for key, record in build.build_records(Path(cache)).items():
            print(f"  {key}: {record['seconds']:.0f} s, peak RSS {record['peak_rss_mib']} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--patches", type=int, default=300)
    args = parser.parse_args()

    build.ensure_binaries()
    print("recorded cold builds (from the cache):")
    for key, record in build.build_records().items():
        print(f"  {key}: {record['seconds']:.0f} s, peak RSS {record['peak_rss_mib']} MiB")
    if args.cold:
        cold_build()

    sandbox = Sandbox(name=f"bench-{os.getpid()}")
    started = time.monotonic()
    state = sandbox.up()
    print(f"warm sandbox up until nodes Ready (CRDs installed): {time.monotonic() - started:.1f} s "
          f"(control plane {state.timings['control_plane_s']:.1f} s)")
    try:
        api = api_client_from_kubeconfig(state.kubeconfig)
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bench"), data={"n": "0"})
        )
        latencies = []
        for index in range(args.patches):
            began = time.perf_counter()
            core.patch_namespaced_config_map("bench", "default", {"data": {"n": str(index)}})
            latencies.append((time.perf_counter() - began) * 1000)
        print(f"apiserver PATCH round-trip over {args.patches}: p50 {statistics.median(latencies):.2f} ms, "
              f"p99 {_percentile(latencies, 0.99):.2f} ms")
        pids = read_pids(sandbox.kwok_workdir)
        print(f"sandbox resident memory ({len(pids)} processes): {_rss_mib(pids):.0f} MiB")
        print(json.dumps(sandbox.status()))
    finally:
        sandbox.down()


if __name__ == "__main__":
    main()
