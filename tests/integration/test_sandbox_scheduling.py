"""GPU scheduling on the sandbox: kwok nodes advertise nvidia.com/gpu and the real scheduler places pods."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from controller.kube.client import dynamic_client
from tests.integration.rollout_helpers import wait_until

pytestmark = pytest.mark.cluster


def _deployment(name: str, gpus: int, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "model", "image": "model-server:fake",
                                          "resources": resources}]},
            },
        },
    }


def _create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    dynamic_client(api).resources.get(api_version="apps/v1", kind="Deployment").create(body=body, namespace=namespace)


def _pods(api: client.ApiClient, namespace: str, app: str) -> list[dict[str, Any]]:
    pods = dynamic_client(api).resources.get(api_version="v1", kind="Pod")
    items: list[dict[str, Any]] = pods.get(namespace=namespace, label_selector=f"app={app}").to_dict()["items"]
    return items


def _conditions(pod: dict[str, Any]) -> list[dict[str, Any]]:
    conditions: list[dict[str, Any]] = pod.get("status", {}).get("conditions") or []
    return conditions


def test_gpu_deployment_gets_ready_pods_on_gpu_nodes(api_client: client.ApiClient, namespace: str) -> None:
    _create(api_client, namespace, _deployment("scorer", gpus=1, replicas=2))

    def all_ready() -> list[dict[str, Any]] | None:
        pods = _pods(api_client, namespace, "scorer")
        ready = [
            pod for pod in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in _conditions(pod))
        ]
        return ready if len(ready) == 2 else None

    pods = wait_until(all_ready)
    nodes = dynamic_client(api_client).resources.get(api_version="v1", kind="Node")
    for pod in pods:
        node = nodes.get(name=pod["spec"]["nodeName"]).to_dict()
        assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
        assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 1


def test_more_gpus_than_exist_stay_pending_with_scheduler_reason(
    api_client: client.ApiClient, namespace: str
) -> None:
    _create(api_client, namespace, _deployment("huge", gpus=8))

    def unschedulable() -> dict[str, Any] | None:
        for pod in _pods(api_client, namespace, "huge"):
            for condition in _conditions(pod):
                if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                    return condition
        return None

    condition = wait_until(unschedulable)
    assert "Insufficient nvidia.com/gpu" in condition["message"]
    pod = _pods(api_client, namespace, "huge")[0]
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


def test_cpu_only_pods_schedule_too(api_client: client.ApiClient, namespace: str) -> None:
    _create(api_client, namespace, _deployment("cpu", gpus=0))
    wait_until(lambda: [p for p in _pods(api_client, namespace, "cpu") if p["status"].get("phase") == "Running"])
