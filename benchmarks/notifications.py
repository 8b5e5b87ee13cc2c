"""Notification delivery latency: from the stored transition to the receiver's hands.

The operator runs as its own process on the sandbox; `--rollouts` rollouts (replicas routing, two
1-second canary steps) each go through a new template, and a local webhook receiver records when
each message arrives. Latency is the arrival time minus the message's `at` (stamped right after the
status that records the transition is stored), on the same clock. Prints the figures.

    python -m benchmarks.notifications [--rollouts 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devkit.sandbox.cluster import Sandbox
from e2e.harness import Rollouts, operator_process, rollout_body, wait_until, with_image
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig

NAMESPACE = "notify-bench"
STEPS = [{"canary": {"weight": 20, "duration": "1s"}}, {"canary": {"weight": 50, "duration": "1s"}}]
PER_ROLLOUT = 4  # Started, StepCompleted x2, Completed


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.latencies: list[tuple[str, float]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        arrived = time.time()
        body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.latencies.append((body["event"], arrived - datetime.fromisoformat(body["at"]).timestamp()))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=10)
    args = parser.parse_args(argv)
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    sandbox = Sandbox(name=f"notify-{os.getpid()}")
    state = sandbox.up()
    try:
        api_client = api_client_from_kubeconfig(state.kubeconfig)
        core = client.CoreV1Api(api_client)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        core.create_namespaced_secret(NAMESPACE, client.V1Secret(metadata=client.V1ObjectMeta(name="hook"),
                                                                 string_data={"url": url}))
        rollouts = Rollouts(api_client, NAMESPACE)
        names = [f"model-{i}" for i in range(args.rollouts)]
        with tempfile.TemporaryDirectory() as scratch, \
                operator_process(Path(state.kubeconfig), NAMESPACE, Path(scratch) / "operator.log"):
            for name in names:
                body = rollout_body(name, STEPS, {"replicas": {}}, image="scorer:v1", gpus=0, replicas=1)
                body["spec"]["notifications"] = {"receivers": [
                    {"name": "bench", "type": "webhook", "secretRef": {"name": "hook"}}]}
                rollouts.create(body)
            for name in names:
                rollouts.wait_status(name, lambda s: s.get("phase") == "Completed", 120, "first deploy")
            started = time.monotonic()
            for name in names:
                rollouts.patch(name, with_image(rollout_body(name, STEPS, {}), "scorer:v2", gpus=0))
            wanted = PER_ROLLOUT * len(names)
            wait_until(lambda: len(receiver.latencies) >= wanted, 300, f"{wanted} notifications")
            took = time.monotonic() - started
    finally:
        sandbox.down()
        receiver.shutdown()
    lags = [lag for _, lag in receiver.latencies]
    events = sorted({event for event, _ in receiver.latencies})
    print(f"{len(lags)} notifications ({', '.join(events)}) from {args.rollouts} rollouts in {took:.1f}s")
    print(f"delivery latency (stored transition -> receiver): median {statistics.median(lags) * 1000:.0f} ms, "
          f"p95 {_percentile(lags, 0.95) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
