"""The fake nodes kwok manages: one CPU node and GPU nodes advertising nvidia.com/gpu."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class NodeShape:
    name: str
    cpu: str
    memory: str
    gpus: int = 0
    gpu_product: str = ""
    pods: int = 110


DEFAULT_NODES = (
    NodeShape(name="cpu-0", cpu="16", memory="64Gi"),
    NodeShape(name="gpu-0", cpu="32", memory="256Gi", gpus=2, gpu_product="NVIDIA-A10G"),
    NodeShape(name="gpu-1", cpu="32", memory="256Gi", gpus=2, gpu_product="NVIDIA-A10G"),
)


def pod_cidr(index: int) -> str:
    """Node `index`'s pod range: a /16 each (kwok hands out pod IPs from it), 10.64.0.0 onwards."""
    return f"10.{64 + index}.0.0/16"


def node_manifest(shape: NodeShape, index: int = 0) -> dict[str, Any]:
    """A Node object that kwok's controller adopts (annotation kwok.x-k8s.io/node=fake)."""
    capacity = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods)}
    labels = {
        "kubernetes.io/hostname": shape.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "node.modelrollout.dev/pool": "gpu" if shape.gpus else "cpu",
    }
    if shape.gpus:
        capacity[GPU_RESOURCE] = str(shape.gpus)
        # The labels NVIDIA's GPU feature discovery sets, so node selectors written
        # for real clusters also match here.
        labels["nvidia.com/gpu.present"] = "true"
        labels["nvidia.com/gpu.product"] = shape.gpu_product
        labels["nvidia.com/gpu.count"] = str(shape.gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": shape.name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": pod_cidr(index), "podCIDRs": [pod_cidr(index)]},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
        },
    }
