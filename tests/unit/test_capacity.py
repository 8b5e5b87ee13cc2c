"""Free GPUs on the nodes a template can land on: selectors, affinity, taints, whole pods."""

from __future__ import annotations

from typing import Any

from controller.capacity import NodeView, Taint, can_land, node_view, pod_requests, shortfall

GPU = "nvidia.com/gpu"
A10 = {"nvidia.com/gpu.product": "A10G", "pool": "gpu"}
NODES = [
    NodeView("gpu-0", A10, (), {GPU: 2}),
    NodeView("gpu-1", A10, (), {GPU: 2}),
    NodeView("h100-0", {"nvidia.com/gpu.product": "H100"}, (Taint("dedicated", "training", "NoSchedule"),), {GPU: 8}),
    NodeView("cpu-0", {"pool": "cpu"}, (), {}),
]


def _spec(gpus: int = 1, **extra: Any) -> dict[str, Any]:
    return {"containers": [{"name": "m", "resources": {"limits": {GPU: str(gpus), "cpu": "4"}}}], **extra}


def test_a_pods_extended_resources_only() -> None:
    assert pod_requests(_spec(2)) == {GPU: 2}
    assert pod_requests({"containers": [{"name": "m", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}) == {}


def test_where_a_template_can_land() -> None:
    assert [n.name for n in NODES if can_land(n, _spec())] == ["gpu-0", "gpu-1", "cpu-0"]
    assert [n.name for n in NODES if can_land(n, _spec(nodeSelector={"pool": "gpu"}))] == ["gpu-0", "gpu-1"]
    tolerant = _spec(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "training",
                                   "effect": "NoSchedule"}])
    assert can_land(NODES[2], tolerant) and not can_land(NODES[2], _spec())
    affinity = _spec(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                                     "values": ["H100"]}]}]}}},
        tolerations=[{"operator": "Exists"}])
    assert [n.name for n in NODES if can_land(n, affinity)] == ["h100-0"]
    assert not can_land(NodeView("gpu-2", A10, (), {GPU: 2}, unschedulable=True), _spec())


def test_whole_pods_must_fit_on_one_node() -> None:
    on_a10 = _spec(nodeSelector={"pool": "gpu"})
    assert shortfall(NODES, {}, on_a10, 4) is None
    used = {"gpu-0": {GPU: 1}, "gpu-1": {GPU: 1}}
    # Two GPUs are free, one on each node: one pod of two GPUs fits nowhere.
    assert shortfall(NODES, used, _spec(2, nodeSelector={"pool": "gpu"}), 1) == (
        "0 of 1 candidate pods fit: 2 nvidia.com/gpu missing (2 nvidia.com/gpu a pod; 2 nodes its template can "
        "land on)")
    assert shortfall(NODES, used, on_a10, 2) is None
    assert shortfall(NODES, {"gpu-0": {GPU: 2}, "gpu-1": {GPU: 2}}, on_a10, 2) == (
        "0 of 2 candidate pods fit: 2 nvidia.com/gpu missing (1 nvidia.com/gpu a pod; 2 nodes its template can "
        "land on)")
    assert shortfall(NODES, {}, {"containers": [{"name": "m"}]}, 10) is None, "no GPUs asked: nothing to check"
    assert shortfall(NODES, {"gpu-0": {GPU: 2}, "gpu-1": {GPU: 2}}, _spec(0), 10) is None, "0 GPUs asks for none"


def test_a_node_object_as_the_apiserver_gives_it() -> None:
    view = node_view({"metadata": {"name": "gpu-0", "labels": A10},
                      "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
                      "status": {"allocatable": {"cpu": "32", GPU: "2", "hugepages-2Mi": "0"}}})
    assert view == NodeView("gpu-0", A10, (Taint("nvidia.com/gpu", "", "NoSchedule"),), {GPU: 2})
