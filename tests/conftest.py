"""Shared fixtures: one real sandbox cluster per session, a fresh namespace per test.

Tests that take the `sandbox` fixture fail loudly if it cannot start: they never skip.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from devkit.sandbox import build
from devkit.sandbox.cluster import Sandbox, SandboxState
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig
from devkit import crdgen


@pytest.fixture(scope="session")
def sandbox_instance() -> Iterator[Sandbox]:
    instance = Sandbox(name=f"pytest-{os.getpid()}-{secrets.token_hex(2)}")
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture(scope="session")
def envoy_gateway(sandbox_instance: Sandbox) -> SandboxState:
    """The session's sandbox with Envoy Gateway's controller running (started by the first test that asks)."""
    controller = sandbox_instance.envoy_gateway(build.ensure_binaries())
    if not controller.running():
        controller.start()
    return SandboxState.load(sandbox_instance.directory)


@pytest.fixture(scope="session")
def sandbox(sandbox_instance: Sandbox) -> SandboxState:
    state = SandboxState.load(sandbox_instance.directory)
    # Kopf and kubectl in subprocesses find the cluster through the environment.
    os.environ["KUBECONFIG"] = state.kubeconfig
    return state


@pytest.fixture(scope="session")
def kubeconfig(sandbox: SandboxState) -> Path:
    return Path(sandbox.kubeconfig)


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = api_client_from_kubeconfig(kubeconfig)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = f"t-{secrets.token_hex(4)}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def crd_installed(api_client: client.ApiClient) -> Iterator[None]:
    extensions = client.ApiextensionsV1Api(api_client)
    body = yaml.safe_load(crdgen.CRD_PATH.read_text())
    try:
        extensions.create_custom_resource_definition(body)
    except client.ApiException as error:
        if error.status != 409:
            raise
    name = body["metadata"]["name"]
    for _ in range(100):
        crd = extensions.read_custom_resource_definition(name)
        conditions = crd.status.conditions if crd.status and crd.status.conditions else []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            break
        time.sleep(0.1)
    yield
