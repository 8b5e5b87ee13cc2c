"""Prometheus credentials go only where the Secret's owner allowed: a listener that must receive nothing."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller import api
from tests.integration.rollout_helpers import (
    Rollouts,
    httproute,
    operator_process,
    rollout_body,
    wait_until,
    with_image,
)

pytestmark = pytest.mark.cluster

GATEWAY = {"gatewayAPI": {"httpRoute": "scorer"}}
EMPTY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()


class Listener:
    """A loopback HTTP server that answers like an empty Prometheus and records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                received.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(EMPTY)))
                self.end_headers()
                self.wfile.write(EMPTY)

            do_POST = do_GET

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def _secret(api_client: client.ApiClient, namespace: str, annotations: dict[str, str]) -> None:
    data = {"username": "alice", "password": "s3cret"}
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="prom-creds", annotations=annotations),
        data={key: base64.b64encode(value.encode()).decode() for key, value in data.items()}))


def _run(rollouts: Rollouts, kubeconfig: Path, namespace: str, log: Path, address: str) -> dict[str, Any]:
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", [{"canary": {"weight": 10, "duration": "1h"}}], GATEWAY)
    body["spec"]["analysis"] = {
        "prometheus": {"address": address, "secretRef": {"name": "prom-creds"}},
        "interval": "1s",
        "guardrails": [{"name": "errors", "template": "errorRate", "ignoreBelow": 0.05}],
    }
    with operator_process(kubeconfig, namespace, log):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="first revision")
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        return rollouts.wait_status(
            "scorer", lambda s: s.get("analysis") is not None or any(
                "prom-creds" in c.get("message", "") for c in s.get("conditions", [])),
            what="an analysis, or a condition naming the Secret")


@pytest.mark.parametrize(("annotations", "refusal"), [
    ({}, "does not allow its credentials to be sent to"),
    ({api.PROMETHEUS_ADDRESSES_ANNOTATION: "{address}"}, "would send its credentials in plain text"),
    ({api.PROMETHEUS_ADDRESSES_ANNOTATION: "https://prometheus.monitoring:9090, {address}/other",
      api.ALLOW_PLAIN_HTTP_ANNOTATION: "true"}, "does not allow"),
])
def test_credentials_are_refused_unless_the_secret_names_the_address(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
    listener: Listener, annotations: dict[str, str], refusal: str,
) -> None:
    _secret(api_client, namespace, {key: value.format(address=listener.address)
                                    for key, value in annotations.items()})
    rollouts = Rollouts(api_client, namespace)
    status = _run(rollouts, kubeconfig, namespace, tmp_path / "operator.log", listener.address)
    condition = next(c for c in status["conditions"] if "prom-creds" in c.get("message", ""))
    assert refusal in condition["message"]
    assert status["phase"] == "Paused"
    assert listener.requests == [], "not one request: no credentials, and no query either"


def test_credentials_go_where_the_secret_allows(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
    listener: Listener,
) -> None:
    _secret(api_client, namespace, {api.PROMETHEUS_ADDRESSES_ANNOTATION: listener.address + "/",
                                    api.ALLOW_PLAIN_HTTP_ANNOTATION: "true"})
    rollouts = Rollouts(api_client, namespace)
    _run(rollouts, kubeconfig, namespace, tmp_path / "operator.log", listener.address)
    wait_until(lambda: listener.requests, what="a query at the allowed address")
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert all(request["authorization"] == expected for request in listener.requests)


def _run_without_source(rollouts: Rollouts, kubeconfig: Path, namespace: str, log: Path,
                        *args: str) -> dict[str, Any]:
    """A rollout whose analysis names no Prometheus, under an operator started with `args`."""
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", [{"canary": {"weight": 10, "duration": "1h"}}], GATEWAY)
    body["spec"]["analysis"] = {"interval": "1s",
                                "guardrails": [{"name": "errors", "template": "errorRate", "ignoreBelow": 0.05}]}
    with operator_process(kubeconfig, namespace, log, *args):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="first revision")
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        return rollouts.wait_status(
            "scorer", lambda s: (s.get("analysis") or {}).get("reason", "") != "" or any(
                "Prometheus" in c.get("message", "") for c in s.get("conditions", [])),
            what="an analysis, or a condition saying there is no Prometheus")


def test_the_operators_own_prometheus_serves_rollouts_that_name_none(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
    listener: Listener,
) -> None:
    mounted = tmp_path / "prometheus-secret"
    mounted.mkdir()
    (mounted / "token").write_text("operator-token")
    rollouts = Rollouts(api_client, namespace)
    _run_without_source(rollouts, kubeconfig, namespace, tmp_path / "operator.log",
                        "--prometheus-address", listener.address, "--prometheus-credentials", str(mounted),
                        "--prometheus-allow-plain-http")
    wait_until(lambda: listener.requests, what="a query at the operator's Prometheus")
    assert all(request["authorization"] == "Bearer operator-token" for request in listener.requests)


def test_without_any_prometheus_a_step_with_guardrails_holds_and_says_why(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    rollouts = Rollouts(api_client, namespace)
    status = _run_without_source(rollouts, kubeconfig, namespace, tmp_path / "operator.log")
    assert any("no Prometheus to measure with" in c.get("message", "") for c in status["conditions"]), status
    assert status["phase"] == "Paused"
    assert status["canaryWeight"] == 10, "the step holds; it neither goes on unchecked nor rolls back"
