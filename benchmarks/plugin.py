"""The kubectl plugin's figures: `get` on a rollout with 20 decisions, and how soon `get --watch`
redraws after a status change.

A rollout's status is written directly (no operator runs): 20 decisions, then, for the watch, a
new canaryWeight each round; the watch's terminal output is read from a pipe until the new figure
shows on a pseudo-terminal. Prints each round and the medians.

    python -m benchmarks.plugin [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import pty
import selectors
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from devkit.sandbox.cluster import Sandbox
from e2e.harness import rollout_body
from kubernetes import client

from controller import api
from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "plugin-bench"
PLUGIN = [sys.executable, "-m", "controller.plugin.cli"]


def _status(weight: int) -> dict[str, Any]:
    decisions = [{"step": 0, "test": "guardrail errors", "verdict": "breach: hold", "at": f"2026-11-24T02:{i:02d}:00Z",
                  "pValue": 0.5, "effect": 0.001} for i in range(20)]
    return {"phase": "Progressing", "currentStep": 0, "stepLabel": "1/1", "canaryWeight": weight,
            "stableRevision": "aaa", "candidateRevision": "bbb", "decisions": decisions, "observedGeneration": 1}


def _watch_redraws(base: list[str], custom: client.CustomObjectsApi, rounds: int) -> list[float]:
    """Seconds from each status write until the watch has drawn its new weight."""
    # A terminal, as a person has: rich draws live views only on one.
    env = dict(os.environ, COLUMNS="150", LINES="60", TERM="xterm")
    terminal, tty = pty.openpty()
    watcher = subprocess.Popen([*base, "get", "scorer", "--watch", "--timeout", "600"], env=env,
                               stdout=tty, stderr=tty)
    os.close(tty)
    selector = selectors.DefaultSelector()
    selector.register(terminal, selectors.EVENT_READ)
    seen = b""

    def wait_for(text: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} never drawn")
            if selector.select(timeout=1):
                seen += os.read(terminal, 65536)

    redraws = []
    try:
        wait_for(b" 20%")
        for round_ in range(rounds):
            weight = 30 + round_
            seen = b""
            started = time.monotonic()
            custom.patch_namespaced_custom_object_status(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL,
                                                         "scorer", {"status": {"canaryWeight": weight}})
            wait_for(f" {weight}%".encode())
            redraws.append(time.monotonic() - started)
    finally:
        watcher.terminate()
        watcher.wait(10)
        os.close(terminal)
    return redraws


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sandbox = Sandbox(name=f"plugin-{os.getpid()}")
    state = sandbox.up(install_crds=False)
    try:
        api_client = api_client_from_kubeconfig(state.kubeconfig)
        client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NAMESPACE}})  # type: ignore[arg-type]
        custom = client.CustomObjectsApi(api_client)
        custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, rollout_body(
            "scorer", [{"canary": {"weight": 20, "duration": "1h"}}], {"gatewayAPI": {"httpRoute": "scorer"}}, gpus=0,
            replicas=1))
        custom.patch_namespaced_custom_object_status(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, "scorer",
                                                     {"status": _status(20)})
        base = [*PLUGIN, "--kubeconfig", state.kubeconfig, "-n", NAMESPACE]
        gets = []
        for _ in range(args.rounds):
            started = time.monotonic()
            subprocess.run([*base, "get", "scorer"], check=True, capture_output=True)
            gets.append(time.monotonic() - started)
        print(f"get, 20 decisions (a new process each, Python start included): "
              f"median {statistics.median(gets) * 1000:.0f} ms, max {max(gets) * 1000:.0f} ms")

        redraws = _watch_redraws(base, custom, args.rounds)
        print(f"watch redraw after a status write: median {statistics.median(redraws) * 1000:.0f} ms, "
              f"max {max(redraws) * 1000:.0f} ms ({args.rounds} writes)")
    finally:
        sandbox.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
