"""GPU capacity on the sandbox's kwok GPU nodes (two nodes of two nvidia.com/gpu): a stable that holds
every GPU, then a new template. surge reports InsufficientCapacity and creates nothing until a node
with free GPUs joins; wait gives up after its timeout and rolls back, the stable untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devkit.sandbox.nodes import NodeShape, node_manifest
from kubernetes import client

from tests.integration.rollout_helpers import (
    Rollouts,
    httproute,
    operator_process,
    rollout_body,
    wait_until,
    with_image,
)

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"
ON_GPU_NODES = {"nvidia.com/gpu.present": "true"}


def _gpu_pods_elsewhere(api_client: client.ApiClient, namespace: str) -> list[str]:
    pods = client.CoreV1Api(api_client).list_pod_for_all_namespaces().items
    return [f"{p.metadata.namespace}/{p.metadata.name}" for p in pods
            if p.metadata and p.metadata.namespace != namespace and p.spec and p.spec.node_name
            and any(GPU in ((c.resources.limits or {}) if c.resources else {}) for c in p.spec.containers)]


def _body(name: str, capacity: dict[str, Any]) -> dict[str, Any]:
    body = rollout_body(name, [{"canary": {"weight": 20, "duration": "1h"}}], {"gatewayAPI": {"httpRoute": name}},
                        image="scorer:v1", gpus=2, replicas=2)
    body["spec"]["template"]["spec"]["nodeSelector"] = ON_GPU_NODES
    body["spec"]["strategy"]["capacity"] = capacity
    body["spec"]["deletionPolicy"] = "Delete"
    return body


def _condition(rollouts: Rollouts, name: str, type_: str) -> dict[str, Any] | None:
    return next((c for c in rollouts.status(name).get("conditions", []) if c["type"] == type_), None)


def _take_route_elsewhere(rollouts: Rollouts, namespace: str, name: str) -> None:
    """deletionPolicy Delete removes only what no route needs: the route's owner sends its rule elsewhere
    first, and the rollout sees the rule taken back."""
    route = rollouts.get_object("gateway.networking.k8s.io", "v1", "httproutes", name)
    route["spec"]["rules"][1]["backendRefs"] = [{"name": "elsewhere", "port": 8080}]
    rollouts.custom.replace_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes",
                                                     name, route)
    wait_until(lambda: (_condition(rollouts, name, "RouteManaged") or {}).get("reason") == "RouteTakenBack", 60,
             "the route taken back")


def _deployments(api_client: client.ApiClient, namespace: str) -> list[str]:
    return sorted(str(d.metadata.name) for d in client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items
                  if d.metadata)


@pytest.fixture
def extra_gpu_node(api_client: client.ApiClient) -> Iterator[dict[str, Any]]:
    """A third GPU node, created when the test says so (capacity appearing), deleted afterwards."""
    manifest = node_manifest(NodeShape(name="gpu-extra", cpu="32", memory="256Gi", gpus=4,
                                       gpu_product="NVIDIA-A10G"), index=3)
    yield manifest
    try:
        client.CoreV1Api(api_client).delete_node("gpu-extra")
    except client.ApiException as error:
        if error.status != 404:
            raise


def test_a_full_cluster_holds_the_candidate_under_surge_and_times_out_under_wait(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
    extra_gpu_node: dict[str, Any],
) -> None:
    wait_until(lambda: not _gpu_pods_elsewhere(api_client, namespace), 90, "no other test holding GPUs")
    rollouts = Rollouts(api_client, namespace)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log", "--check-capacity"):
        # surge: the stable takes all four GPUs; the candidate would need four more.
        rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("full"))
        body = _body("full", {"policy": "surge"})
        rollouts.create(body)
        first = rollouts.wait_status("full", lambda s: s.get("phase") == "Completed", 60, "stable on every GPU")
        rollouts.patch("full", with_image(body, "scorer:v2", gpus=2))
        held = wait_until(lambda: _condition(rollouts, "full", "InsufficientCapacity"), 60, "InsufficientCapacity")
        assert held["status"] == "True"
        assert held["message"] == ("0 of 2 candidate pods fit: 4 nvidia.com/gpu missing (2 nvidia.com/gpu a pod; "
                                   "2 nodes its template can land on)")
        status = rollouts.status("full")
        assert status["phase"] == "Progressing" and status["canaryWeight"] == 0
        assert _deployments(api_client, namespace) == [f"full-{first['stableRevision']}"], "nothing created"

        # Capacity appears: a node with four free GPUs joins; the candidate is created and runs there.
        client.CoreV1Api(api_client).create_node(extra_gpu_node)  # type: ignore[arg-type]
        rollouts.wait_status("full", lambda s: s.get("canaryWeight") == 20, 90, "the canary once GPUs are free")
        assert _condition(rollouts, "full", "InsufficientCapacity")["status"] == "False"  # type: ignore[index]
        _take_route_elsewhere(rollouts, namespace, "full")
        rollouts.delete("full")
        wait_until(lambda: not _deployments(api_client, namespace), 60, "the first rollout's GPUs freed")
        client.CoreV1Api(api_client).delete_node("gpu-extra")

        # wait: the same full cluster, a 5 s timeout.
        rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("patient"))
        body = _body("patient", {"policy": "wait", "timeout": "5s"})
        rollouts.create(body)
        first = rollouts.wait_status("patient", lambda s: s.get("phase") == "Completed", 60, "stable on every GPU")
        rollouts.patch("patient", with_image(body, "scorer:v2", gpus=2))
        done = rollouts.wait_status("patient", lambda s: s.get("phase") == "RolledBack", 90, "CapacityTimeout")
        rolled = next(c for c in done["conditions"] if c["type"] == "RolledBack")
        assert rolled["reason"] == "CapacityTimeout" and "4 nvidia.com/gpu missing" in rolled["message"]
        assert done["stableRevision"] == first["stableRevision"]
        assert _deployments(api_client, namespace) == [f"patient-{first['stableRevision']}"]
        stable = client.AppsV1Api(api_client).read_namespaced_deployment(f"patient-{first['stableRevision']}",
                                                                         namespace)
        assert stable.spec is not None and stable.spec.replicas == 2, "the stable kept its size"


def _deployment(api_client: client.ApiClient, namespace: str, name: str) -> tuple[int, int]:
    """(replicas asked for, Ready replicas) of one Deployment."""
    found = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    assert found.spec is not None and found.status is not None
    return int(found.spec.replicas or 0), int(found.status.ready_replicas or 0)


def test_swap_makes_room_on_a_full_cluster_and_an_abort_gives_the_stable_its_size_back(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    """Four stable pods of one GPU hold all four: swap moves one GPU, then a second, to the candidate,
    the route following each step; an abort stops the candidate and the stable is whole again."""
    wait_until(lambda: not _gpu_pods_elsewhere(api_client, namespace), 90, "no other test holding GPUs")
    rollouts = Rollouts(api_client, namespace)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log", "--check-capacity"):
        rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("swap"))
        body = rollout_body("swap", [{"canary": {"weight": 25, "duration": "2s"}}, {"canary": {"weight": 50}},
                                     {"pause": {}}],
                            {"gatewayAPI": {"httpRoute": "swap"}}, image="scorer:v1", gpus=1, replicas=4)
        body["spec"]["template"]["spec"]["nodeSelector"] = ON_GPU_NODES
        body["spec"]["strategy"]["capacity"] = {"policy": "swap", "minAvailable": 2}
        body["spec"]["deletionPolicy"] = "Delete"
        rollouts.create(body)
        first = rollouts.wait_status("swap", lambda s: s.get("phase") == "Completed", 60, "stable on every GPU")
        stable = f"swap-{first['stableRevision']}"
        assert _deployment(api_client, namespace, stable) == (4, 4)

        rollouts.patch("swap", with_image(body, "scorer:v2", gpus=1))
        at_pause = rollouts.wait_status("swap", lambda s: s.get("phase") == "Paused", 120, "the pause after 50%")
        assert at_pause["canaryWeight"] == 50
        candidate = f"swap-{at_pause['candidateRevision']}"
        assert _deployment(api_client, namespace, stable) == (2, 2), "the stable gave up exactly two GPUs"
        assert _deployment(api_client, namespace, candidate) == (2, 2), "and the candidate runs on them"
        reasons = [c["reason"] for c in at_pause["conditions"] if c["type"] == "InsufficientCapacity"]
        assert reasons in ([], ["RolloutStarted"]), "swap never waits for spare GPUs"

        rollouts.act("swap", "abort")
        done = rollouts.wait_status("swap", lambda s: s.get("phase") == "RolledBack", 60, "the abort")
        assert done["canaryWeight"] == 0 and done["stableRevision"] == first["stableRevision"]
        wait_until(lambda: _deployment(api_client, namespace, stable) == (4, 4), 60,
                 "the stable's four pods Ready again, on the candidate's freed GPUs")
        assert _deployment(api_client, namespace, candidate)[0] == 0
        _take_route_elsewhere(rollouts, namespace, "swap")
        rollouts.delete("swap")
        wait_until(lambda: not _deployments(api_client, namespace), 60, "the GPUs freed for the next test")


@pytest.fixture
def vgpu_node(api_client: client.ApiClient) -> Iterator[str]:
    """A node that advertises 1000 of a vGPU memory resource and KubeVirt's kvm device: the
    apiserver stores both as "1k"."""
    manifest = node_manifest(NodeShape(name="vgpu-0", cpu="32", memory="256Gi"), index=4)
    manifest["metadata"]["labels"]["pool"] = "vgpu"
    for key in ("capacity", "allocatable"):
        manifest["status"][key].update({"example.com/vgpu-memory": "1000", "devices.kubevirt.io/kvm": "1000"})
    core = client.CoreV1Api(api_client)
    core.create_node(manifest)  # type: ignore[arg-type]
    yield "vgpu-0"
    try:
        core.delete_node("vgpu-0")
    except client.ApiException as error:
        if error.status != 404:
            raise


def test_quantities_the_apiserver_stores_as_1k_are_read(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
    vgpu_node: str,
) -> None:
    stored = client.CoreV1Api(api_client).read_node(vgpu_node)
    assert stored.status is not None and (stored.status.allocatable or {}).get("example.com/vgpu-memory") == "1k"
    rollouts = Rollouts(api_client, namespace)
    body = rollout_body("vgpu", [{"canary": {"weight": 20, "duration": "1h"}}], {"gatewayAPI": {"httpRoute": "vgpu"}},
                        gpus=0, replicas=1)
    template = body["spec"]["template"]["spec"]
    template["nodeSelector"] = {"pool": "vgpu"}
    template["containers"][0]["resources"] = {"limits": {"example.com/vgpu-memory": "600"}}
    body["spec"]["deletionPolicy"] = "Delete"
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log", "--check-capacity"):
        rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("vgpu"))
        rollouts.create(body)
        rollouts.wait_status("vgpu", lambda s: s.get("phase") == "Completed", 90, "first deploy on the vGPU node")
        # A second 600 does not fit beside the first on 1k: the node is counted, not dropped.
        patch = {"spec": {"template": {"spec": {**template, "containers": [
            {**template["containers"][0], "image": "scorer:v2"}]}}}}
        rollouts.patch("vgpu", patch)
        held = wait_until(lambda: _condition(rollouts, "vgpu", "InsufficientCapacity"), 60, "InsufficientCapacity")
        assert held["message"].startswith("0 of 1 candidate pods fit: 600 example.com/vgpu-memory missing"), held
