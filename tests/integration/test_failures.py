"""Injected failures become conditions and Events, traffic stays where a step put it, and the loop goes on.

- API 500: a validating webhook that cannot be called makes the apiserver answer route writes with
  500 Internal Error (failurePolicy Fail), in the test's namespace only.
- Connection reset: the operator talks to the apiserver through a loopback TCP proxy that resets
  every connection for a while.
(409s, a malformed status and a hung Prometheus are in test_runtime.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.rollout_helpers import (
    Rollouts,
    httproute,
    httproute_state,
    operator_process,
    rollout_body,
    wait_until,
    with_image,
)

pytestmark = pytest.mark.cluster

GATEWAY = {"gatewayAPI": {"httpRoute": "scorer"}}
STEPS: list[dict[str, Any]] = [{"canary": {"weight": 10, "duration": "1s"}},
                               {"canary": {"weight": 50, "duration": "1h"}}]


def _refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: connecting to it is refused


@contextlib.contextmanager
def failing_route_webhook(api_client: client.ApiClient, namespace: str) -> Iterator[None]:
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"fail-routes-{namespace}"
    admission.create_validating_webhook_configuration({  # type: ignore[arg-type]
        "metadata": {"name": name},
        "webhooks": [{
            "name": "fail.routes.test",
            "clientConfig": {"url": f"https://127.0.0.1:{_refused_port()}/validate"},
            "rules": [{"apiGroups": ["gateway.networking.k8s.io"], "apiVersions": ["*"],
                       "operations": ["UPDATE"], "resources": ["httproutes"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 2,
        }],
    })
    try:
        yield
    finally:
        admission.delete_validating_webhook_configuration(name)


def test_api_500_on_the_route_write_becomes_a_condition_and_the_step_waits(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", STEPS, GATEWAY, gpus=0)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="deployed")
        with failing_route_webhook(api_client, namespace):
            rollouts.patch("scorer", with_image(body, "scorer:v2", gpus=0))
            status = rollouts.wait_status(
                "scorer", lambda s: any(c["reason"] == "ApiError" and "500" in c["message"]
                                        for c in s.get("conditions", [])), what="ApiError 500 condition")
            assert status["canaryWeight"] == 0, "status never claims a route it could not write"
            assert httproute_state(rollouts, "scorer") == (0, 0)
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 50, what="goes on once writes work")
        assert httproute_state(rollouts, "scorer") == (50, 0)
    core = client.CoreV1Api(api_client)
    wait_until(lambda: any(e.reason == "ApiError" for e in core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=scorer").items), what="the ApiError Event")
    assert "Traceback" not in (tmp_path / "operator.log").read_text(errors="replace")


class ResettingProxy:
    """A loopback TCP proxy to the apiserver; while `resetting`, every connection is reset (RST)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.resetting = threading.Event()
        self.resets = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.resetting.is_set():
            self.resets += 1
            self._reset(writer)
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def start_resetting(self) -> None:
        """Reset every open connection now and every new one until `stop_resetting`."""
        def cut() -> None:
            self.resetting.set()
            for writer in list(self.writers):
                self.resets += 1
                self._reset(writer)
        self.loop.call_soon_threadsafe(cut)

    def stop_resetting(self) -> None:
        self.resetting.clear()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_connection_resets_are_survived_and_the_rollout_completes(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    proxy = ResettingProxy(int(server.rsplit(":", 1)[1]))
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    proxied = tmp_path / "proxied-kubeconfig"
    proxied.write_text(yaml.safe_dump(config))
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    steps = [{"canary": {"weight": 10, "duration": "3s"}}, {"canary": {"weight": 50, "duration": "2s"}}]
    body = rollout_body("scorer", steps, GATEWAY, gpus=0)
    try:
        with operator_process(proxied, namespace, tmp_path / "operator.log"):
            rollouts.create(body)
            rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="deployed")
            rollouts.patch("scorer", with_image(body, "scorer:v2", gpus=0))
            rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 10, what="canary 10")
            proxy.start_resetting()
            wait_until(lambda: proxy.resets >= 3, what="connections reset")
            assert httproute_state(rollouts, "scorer") == (10, 0), "traffic stays where the step put it"
            proxy.stop_resetting()
            rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed"
                                 and bool(s.get("previousStableRevision")), timeout=120, what="completed")
    finally:
        proxy.close()
    assert httproute_state(rollouts, "scorer") == (0, 0)
    assert "Traceback" not in (tmp_path / "operator.log").read_text(errors="replace")
