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


def test_quantities_as_the_apiserver_stores_them() -> None:
    """The apiserver stores 1000 as "1k": every quantity spelling parses, and a node is never dropped."""
    node = node_view({"metadata": {"name": "kvm-0"}, "status": {"allocatable": {
        GPU: "1e3", "devices.kubevirt.io/kvm": "1k", "example.com/half": "500m", "example.com/mem": "1Gi",
        "example.com/none": "0", "cpu": "500m"}}})
    assert node.allocatable == {GPU: 1000, "devices.kubevirt.io/kvm": 1000, "example.com/mem": 2**30}
    assert node.unreadable == ()
    assert pod_requests({"containers": [{"name": "m", "resources": {"limits": {
        "example.com/foo": "1k", GPU: "0", "example.com/bar": 1000}}}]}) == {"example.com/foo": 1000,
                                                                          "example.com/bar": 1000}
    assert shortfall([node], {}, _spec(1), 1000) is None
    assert shortfall([node], {}, _spec(1), 1001) is not None


def test_an_unreadable_amount_keeps_the_node_and_is_named_in_the_shortfall() -> None:
    node = node_view({"metadata": {"name": "odd-0"}, "status": {"allocatable": {GPU: "lots", "amd.com/gpu": "2"}}})
    assert node.name == "odd-0" and node.allocatable == {"amd.com/gpu": 2}
    assert node.unreadable == ("nvidia.com/gpu='lots'",)
    why = shortfall([node], {}, _spec(1), 1)
    assert why is not None and "node odd-0: nvidia.com/gpu='lots'" in why
