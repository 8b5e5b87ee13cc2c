"""Leader failover: SIGKILL the replica holding the Lease; how long until the standby holds it.

Each round starts a fresh standby beside the leader, waits until it serves its
/metrics (its caches are syncing), SIGKILLs the leader, and times until the
Lease names the standby. Prints each round and the p50. The lease lasts 15 s
and is renewed every 5 s, so the expected figure is 10-20 s.

    python -m benchmarks.failover [--kills 10]
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
from devkit.sandbox.processes import free_port
from e2e.harness import start_operator, wait_until
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "failover"


def start(kubeconfig: str, identity: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = start_operator(kubeconfig, NAMESPACE, log, "--identity", identity,
                             env={"MODELROLLOUT_METRICS_PORT": str(port)})
    return process, port




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the sandbox and the operators are stopped by the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sandbox = Sandbox(name=f"failover-{os.getpid()}")
    sandbox.up(install_crds=False)
    workdir = Path(tempfile.mkdtemp(prefix="failover-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        kubeconfig = str(sandbox.kubeconfig)
        api = api_client_from_kubeconfig(kubeconfig)
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        leases = client.CoordinationV1Api(api)

        def holder() -> str | None:
            try:
                lease = leases.read_namespaced_lease("modelrollout", NAMESPACE)
            except client.ApiException:
                return None
            return lease.spec.holder_identity if lease.spec else None

        leader, _ = start(kubeconfig, "r0", workdir / "r0.log")
        processes.append(leader)
        wait_until(lambda: holder() == "r0", 60, "first leader")
        took = []
        for round_ in range(1, args.kills + 1):
            identity = f"r{round_}"
            standby, port = start(kubeconfig, identity, workdir / f"{identity}.log")
            processes.append(standby)

            def serving(port: int = port) -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(serving, 60, f"{identity} up")
            leader.send_signal(signal.SIGKILL)
            leader.wait(10)
            killed = time.monotonic()
            def took_over(identity: str = identity) -> bool:
                return holder() == identity

            wait_until(took_over, 60, f"{identity} takes over", every=0.05)
            took.append(time.monotonic() - killed)
            print(f"kill {round_:>2}: standby {identity} holds the lease after {took[-1]:.1f}s", flush=True)
            leader = standby
        print(f"failover p50 {statistics.median(took):.1f}s, max {max(took):.1f}s over {len(took)} kills "
              f"(lease 15 s, retry every 2 s)")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(15)
        sandbox.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
