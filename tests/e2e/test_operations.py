"""Operating a rollout: notifications to a live receiver (and one that is down), status.cost from the
measured traffic, and the operator's own alert firing in Prometheus when a candidate is rolled back.

The world is the e2e one: the operator process serving /metrics, the model-server fleet, load
through the live route, and one real Prometheus scraping both with the chart's operator rules."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from devkit.sandbox.processes import free_port
from e2e.harness import wait_until
from e2e.world import e2e_world
from kubernetes import client

from tests.integration.test_alerts import ALERTS

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

TOKEN = "e2e-bearer-token"
GPU_HOURLY = 1.01


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any], str]] = []  # (arrival, body, Authorization)
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append((time.time(), body, self.headers.get("Authorization", "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()



def _secret(api_client: client.ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data))


def _events(api_client: client.ApiClient, namespace: str, reason: str) -> list[str]:
    events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    return [str(e.message) for e in events if e.reason == reason]


def _firing(prometheus_url: str, name: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_notifications_cost_and_the_operators_alert_for_a_rolled_back_candidate(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    down_url = f"http://127.0.0.1:{free_port()}/services/T000/B000/XXXX"
    with _receiver() as hook, e2e_world(api_client, namespace, kubeconfig, tmp_path,
                                         operator_metrics_port=free_port(),
                                         rule_files=(ALERTS / "operator.yaml",)) as world:
        hook_url = f"http://127.0.0.1:{hook.server_address[1]}/hooks/rollouts"
        _secret(api_client, namespace, "ops-hook", {"url": hook_url, "token": TOKEN})
        _secret(api_client, namespace, "chat-hook", {"url": down_url})
        notifications = {"receivers": [
            {"name": "ops", "type": "webhook", "secretRef": {"name": "ops-hook"}},
            {"name": "chat", "type": "slack", "secretRef": {"name": "chat-hook"}, "events": ["RolledBack"]},
        ]}
        first = world.deploy([{"canary": {"weight": 30, "duration": "10m"}}],
                             spec_extra={"notifications": notifications, "cost": {"gpuHourlyCost": GPU_HOURLY}})
        world.roll_out("good-rebuild")

        # status.cost: both versions priced at the rates Prometheus measured (once a minute).
        def priced(status: dict[str, Any]) -> bool:
            cost = status.get("cost") or {}
            return all((cost.get(role) or {}).get("requestsPerSecond") for role in ("stable", "candidate"))

        status = world.rollouts.wait_status("scorer", priced, 240, "status.cost for both versions")
        cost = status["cost"]
        assert cost["stable"]["revision"] == first["stableRevision"]
        assert cost["candidate"]["revision"] == status["candidateRevision"]
        for role in ("stable", "candidate"):
            version = cost[role]
            assert version["gpus"] == 1
            assert version["monthly"] == round(GPU_HOURLY * 730, 2)
            expected = GPU_HOURLY / 3600 / version["requestsPerSecond"] * 1e6
            assert version["perMillion"] == pytest.approx(expected, abs=0.01)
        total = cost["stable"]["requestsPerSecond"] + cost["candidate"]["requestsPerSecond"]
        assert 0.25 < cost["candidate"]["requestsPerSecond"] / total < 0.35, cost  # the 30% canary
        assert 40 < total < 70, f"the load is 60 requests/s: {cost}"

        # The fault: the candidate starts failing; the operator rolls it back by itself.
        world.fleet.set_knobs(status["candidateRevision"], error_rate=0.3)
        world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", 120, "rollback")

        wait_until(lambda: _firing(world.prometheus.url, "RolloutRolledBack"), 60, "RolloutRolledBack firing")
        alert = _firing(world.prometheus.url, "RolloutRolledBack")[0]
        assert (alert["labels"]["namespace"], alert["labels"]["name"]) == (namespace, "scorer")

        wait_until(lambda: any(body["event"] == "RolledBack" for _, body, _ in hook.received), 30, "RolledBack told")
        told = [body["event"] for _, body, _ in hook.received]
        # A canary started right after the first deploy may pause while the stable's latency tail is
        # still unknown (AnalysisError, then AnalysisRecovered): each such pause is told too.
        pauses = [m for m in _events(api_client, namespace, "AnalysisError") if m.startswith("paused")]
        assert told == ["Started", *["Paused"] * len(pauses), "RolledBack"], told
        arrival, rolled_back, authorization = hook.received[-1]
        assert authorization == f"Bearer {TOKEN}"
        assert rolled_back["rollout"]["name"] == "scorer" and rolled_back["phase"] == "RolledBack"
        assert rolled_back["analysis"]["guardrails"]["error-rate"]["outcome"] == "Breached"
        assert rolled_back["analysis"]["guardrails"]["error-rate"]["value"] > 0.05
        lag = arrival - datetime.fromisoformat(rolled_back["at"]).timestamp()
        print(f"notification delivery latency: {lag * 1000:.0f} ms")
        assert lag < 30

        # The Slack receiver is down: an Event says so, and the rollout did not wait for it.
        wait_until(lambda: _events(api_client, namespace, "NotificationFailed"), 60, "NotificationFailed")
        message = _events(api_client, namespace, "NotificationFailed")[0]
        assert "RolledBack not delivered to receiver 'chat' (slack): ConnectError" in message

    log = (tmp_path / "operator.log").read_text()
    for secret in (TOKEN, hook_url, down_url, "T000/B000"):
        assert secret not in log and secret not in message
