"""Two replicas: one reconciles, the standby takes over when the leader is SIGKILLed; shards split the work."""

from __future__ import annotations

import hashlib
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from devkit.sandbox.processes import free_port
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

LEASE_SECONDS = 15


def writes(port: int) -> float:
    """Write requests an operator has sent, Leases aside, from its own /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("modelrollout_api_requests_total{")
               and 'verb="GET"' not in line and "leases" not in line)


def holder(api_client: client.ApiClient, namespace: str, name: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(name, namespace)
    except client.ApiException:
        return None
    return lease.spec.holder_identity if lease.spec else None


def test_the_standby_takes_over_within_the_lease_duration_and_never_wrote_before(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", [{"canary": {"weight": 25, "duration": "1h"}}],
                        {"gatewayAPI": {"httpRoute": "scorer"}})
    ports = {"a": free_port(), "b": free_port()}
    with ExitStack() as stack:
        a = stack.enter_context(operator_process(kubeconfig, namespace, tmp_path / "a.log", "--identity", "a",
                                                 env={"MODELROLLOUT_METRICS_PORT": str(ports["a"])}))
        wait_until(lambda: holder(api_client, namespace, "modelrollout") == "a", what="a leads")
        stack.enter_context(operator_process(kubeconfig, namespace, tmp_path / "b.log", "--identity", "b",
                                             env={"MODELROLLOUT_METRICS_PORT": str(ports["b"])}))
        wait_until(lambda: _serving(ports["b"]), what="b is up (standby)")
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="deployed by the leader")
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 25, what="canary by the leader")
        assert writes(ports["b"]) == 0, "the standby wrote nothing while a led"
        assert holder(api_client, namespace, "modelrollout") == "a"

        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed = time.monotonic()
        wait_until(lambda: holder(api_client, namespace, "modelrollout") == "b", timeout=LEASE_SECONDS + 10,
                 what="b takes the lease")
        took = time.monotonic() - killed
        # The lease runs 15 s from the last renewal the standby saw; it looks every 2 s.
        assert took <= LEASE_SECONDS + 2 * 2 + 1, f"takeover took {took:.1f}s"
        rollouts.act("scorer", "abort")
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", what="the new leader acts")
        assert httproute_state(rollouts, "scorer") == (0, 0)
    for log in ("a.log", "b.log"):
        assert "Traceback" not in (tmp_path / log).read_text()


def _serving(port: int) -> bool:
    try:
        writes(port)
    except httpx.HTTPError:
        return False
    return True


def test_replicas_split_the_shards_and_every_rollout_progresses(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    rollouts = Rollouts(api_client, namespace)
    names = [f"m{i}" for i in range(6)]
    bodies: dict[str, dict[str, Any]] = {}
    for name in names:
        rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute(name))
        bodies[name] = rollout_body(name, [{"canary": {"weight": 10, "duration": "1h"}}],
                                    {"gatewayAPI": {"httpRoute": name}}, gpus=0, replicas=1)
    shard_leases = [f"modelrollout-shard-{i}" for i in range(4)]
    with ExitStack() as stack:
        for identity in ("a", "b"):
            stack.enter_context(operator_process(kubeconfig, namespace, tmp_path / f"{identity}.log",
                                                 "--identity", identity, "--shards", "4"))

        def split() -> bool:
            holders = [holder(api_client, namespace, lease) or "" for lease in shard_leases]
            return sorted(holders) == ["a", "a", "b", "b"]

        wait_until(split, timeout=60, what="two shards each")
        for name in names:
            rollouts.create(bodies[name])
        for name in names:
            rollouts.wait_status(name, lambda s: s.get("phase") == "Completed", what="deployed")
            rollouts.patch(name, with_image(bodies[name], f"{name}:v2", gpus=0))
        for name in names:
            rollouts.wait_status(name, lambda s: s.get("canaryWeight") == 10, what="canary")
    logs = {identity: (tmp_path / f"{identity}.log").read_text() for identity in ("a", "b")}
    assert all("Traceback" not in text for text in logs.values())


def _shard(namespace: str, name: str, shards: int) -> int:
    """The documented assignment, written here again: sha256 of "namespace/name", its first 8 bytes, mod shards."""
    return int.from_bytes(hashlib.sha256(f"{namespace}/{name}".encode()).digest()[:8], "big") % shards


def _watched(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("modelrollout_rollouts_watched "))


def test_static_shards_watch_only_their_own_rollouts_and_take_over_older_ones(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    rollouts = Rollouts(api_client, namespace)
    names = [f"s{i}" for i in range(6)]
    everyone = ["old", *names]
    bodies: dict[str, dict[str, Any]] = {}
    for name in everyone:
        rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute(name))
        bodies[name] = rollout_body(name, [{"canary": {"weight": 10, "duration": "1h"}}],
                                    {"gatewayAPI": {"httpRoute": name}}, gpus=0, replicas=1)
    # A rollout deployed before sharding: neither it nor its Deployment has a shard label.
    with operator_process(kubeconfig, namespace, tmp_path / "before.log", "--no-leader-election"):
        rollouts.create(bodies["old"])
        rollouts.wait_status("old", lambda s: s.get("phase") == "Completed", what="deployed before sharding")

    def labelled(name: str) -> str | None:
        body = rollouts.get_object("rollouts.mlops.dev", "v1alpha1", "modelrollouts", name)
        return (body["metadata"].get("labels") or {}).get("rollouts.mlops.dev/shard")

    ports = {"a": free_port(), "b": free_port()}
    with ExitStack() as stack:
        for shard, identity in enumerate(("a", "b")):
            stack.enter_context(operator_process(
                kubeconfig, namespace, tmp_path / f"{identity}.log", "--identity", identity, "--shards", "2",
                "--shard", str(shard), env={"MODELROLLOUT_METRICS_PORT": str(ports[identity])}))
        wait_until(lambda: [holder(api_client, namespace, f"modelrollout-shard-{i}") for i in (0, 1)] == ["a", "b"],
                   what="each replica holds its own shard's Lease")
        for name in names:
            rollouts.create(bodies[name])
        for name in everyone:
            wanted = f"{_shard(namespace, name, 2)}-of-2"
            wait_until(lambda name=name, wanted=wanted: labelled(name) == wanted,  # type: ignore[misc]
                       what=f"{name} labelled with shard {wanted}")
        for name in names:
            rollouts.wait_status(name, lambda s: s.get("phase") == "Completed", what="deployed")
        for name in everyone:
            rollouts.patch(name, with_image(bodies[name], f"{name}:v2", gpus=0))
        for name in everyone:
            rollouts.wait_status(name, lambda s: s.get("canaryWeight") == 10, what="canary")
        mine = {"a": sum(1 for name in everyone if _shard(namespace, name, 2) == 0)}
        mine["b"] = len(everyone) - mine["a"]
        # Each process's cache holds its own shard's rollouts only: the other shard's never reach it.
        assert {identity: _watched(port) for identity, port in ports.items()} == mine
        for deployment in client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items:
            assert deployment.metadata is not None
            labels = deployment.metadata.labels or {}
            rollout = labels["rollouts.mlops.dev/rollout"]
            assert labels.get("rollouts.mlops.dev/shard") == f"{_shard(namespace, rollout, 2)}-of-2", \
                f"{deployment.metadata.name} is watched by its rollout's shard"
    for log in ("before.log", "a.log", "b.log"):
        assert "Traceback" not in (tmp_path / log).read_text()
