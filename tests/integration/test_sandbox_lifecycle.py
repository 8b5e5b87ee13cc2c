"""Sandbox start and stop: clear errors, and no process or port left behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from devkit.sandbox.cluster import Sandbox, SandboxState
from devkit.sandbox.errors import SandboxError
from devkit.sandbox.nodes import NodeShape
from devkit.sandbox.processes import pid_alive, port_is_listening, read_pids

pytestmark = pytest.mark.cluster


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_a_taken_port_fails_with_one_clear_message(taken_port: int, sandbox: SandboxState) -> None:
    instance = Sandbox(apiserver_port=taken_port)
    with pytest.raises(SandboxError, match=rf"port {taken_port} for kube-apiserver is already taken"):
        instance.up(install_crds=False)
    assert not instance.directory.exists()


def test_down_leaves_no_process_and_no_port(sandbox: SandboxState) -> None:
    instance = Sandbox()
    state = instance.up(install_crds=False)
    pids = read_pids(instance.kwok_workdir)
    assert len(pids) >= 5  # etcd, apiserver, controller-manager, scheduler, kwok
    assert all(pid_alive(pid) for pid in pids)
    assert instance.status()["running"] is True

    instance.down()

    assert not any(pid_alive(pid) for pid in pids)
    assert not port_is_listening(state.apiserver_port)
    assert not instance.directory.exists()
    assert instance.status()["running"] is False


def test_a_failed_start_leaves_no_orphaned_processes(sandbox: SandboxState) -> None:
    instance = Sandbox()
    seen: list[int] = []
    original = instance._teardown

    def record_then_teardown(binaries: object) -> None:
        seen.extend(read_pids(instance.kwok_workdir))
        original(binaries)  # type: ignore[arg-type]

    instance._teardown = record_then_teardown  # type: ignore[method-assign]
    bad_node = NodeShape(name="broken", cpu="not-a-quantity", memory="1Gi")
    with pytest.raises(SandboxError, match="kubectl apply -f - failed"):
        instance.up(install_crds=False, node_shapes=(bad_node,))
    assert len(seen) >= 5, "the control plane should have started before the failure"
    assert not any(pid_alive(pid) for pid in seen)
    assert not instance.directory.exists()
