"""Will the candidate's pods fit? Free extended resources (GPUs) on the nodes its template can land on.

Pure: node and pod views in, a shortfall out. A node counts when the template's nodeSelector and
required node affinity match its labels, its pods tolerate the node's NoSchedule/NoExecute taints,
and it is schedulable. Its free amount of a resource is its allocatable minus the requests of the
pods bound to it. Pods do not split across nodes, so what counts is how many candidate pods fit
whole, node by node. Only extended resources (`nvidia.com/gpu`, `amd.com/gpu`, ...) are checked:
they are what a stable holds and a candidate cannot share; CPU and memory are left to the scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

GPU_RESOURCE = "nvidia.com/gpu"


def quantity(value: Any) -> int:
    """An extended resource's amount in whole units, from any Kubernetes quantity the apiserver stores
    ("2", 2, "1k", "1e3", "1Gi"). A fraction ("500m") rounds down: a pod takes whole units.
    ValueError when it is not a quantity."""
    amount: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    return math.floor(amount)


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class NodeView:
    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    allocatable: Mapping[str, int]  # extended resources only
    unschedulable: bool = False
    # Allocatable amounts that are not quantities, as `resource='value'`: counted as none.
    unreadable: tuple[str, ...] = ()


def is_extended(resource: str) -> bool:
    """An extended resource: a domain-prefixed name outside kubernetes.io (nvidia.com/gpu, ...)."""
    return "/" in resource and not resource.split("/", 1)[0].endswith("kubernetes.io") \
        and not resource.startswith("hugepages-")


def extended(resources: Mapping[str, Any] | None) -> dict[str, int]:
    """The extended resources of a requests or limits map; an amount of 0 asks for nothing."""
    amounts = {name: quantity(value) for name, value in (resources or {}).items() if is_extended(name)}
    return {name: amount for name, amount in amounts.items() if amount > 0}


def pod_requests(pod_spec: Mapping[str, Any]) -> dict[str, int]:
    """Extended resources one pod asks for: its containers' limits (or requests; they must be equal)."""
    total: dict[str, int] = {}
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        asked = extended(resources.get("limits")) or extended(resources.get("requests"))
        for name, amount in asked.items():
            total[name] = total.get(name, 0) + amount
    return total


def pod_gpus(template: Mapping[str, Any]) -> int:
    """nvidia.com/gpu per pod of a pod template ({metadata, spec})."""
    return pod_requests(template.get("spec") or {}).get(GPU_RESOURCE, 0)


def node_view(node: Mapping[str, Any]) -> NodeView:
    """A node's view; an allocatable amount that cannot be read is kept as `unreadable`, never
    dropped with the node."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    taints = tuple(Taint(str(t.get("key", "")), str(t.get("value", "")), str(t.get("effect", "")))
                   for t in spec.get("taints") or [])
    allocatable: dict[str, int] = {}
    unreadable: list[str] = []
    for name, value in (status.get("allocatable") or {}).items():
        if not is_extended(name):
            continue
        try:
            allocatable[name] = quantity(value)
        except ValueError:
            unreadable.append(f"{name}={value!r}")
    return NodeView(str(meta.get("name", "")), dict(meta.get("labels") or {}), taints,
                    {name: amount for name, amount in allocatable.items() if amount > 0},
                    bool(spec.get("unschedulable")), tuple(unreadable))


def _compare(value: str | None, bound: list[str], greater: bool) -> bool:
    try:
        number, limit = int(str(value)), int(bound[0])
    except (ValueError, IndexError):
        return False
    return number > limit if greater else number < limit


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "")
    values = [str(v) for v in expression.get("values") or []]
    present, value = key in labels, labels.get(key)
    checks = {
        "In": lambda: present and value in values,
        "NotIn": lambda: not present or value not in values,
        "Exists": lambda: present,
        "DoesNotExist": lambda: not present,
        "Gt": lambda: present and _compare(value, values, greater=True),
        "Lt": lambda: present and _compare(value, values, greater=False),
    }
    return bool(checks.get(operator, lambda: False)())


def _affinity_allows(pod_spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(all(_expression_holds(e, labels) for e in term.get("matchExpressions") or [])
               for term in terms)  # terms are ORed, a term's expressions ANDed


def _tolerated(taint: Taint, tolerations: Iterable[Mapping[str, Any]]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.effect:
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration["key"] == taint.key:
                return True
        elif toleration.get("key") == taint.key and str(toleration.get("value", "")) == taint.value:
            return True
    return False


def can_land(node: NodeView, pod_spec: Mapping[str, Any]) -> bool:
    """Whether the scheduler may place a pod of this spec on `node` (as far as labels and taints go)."""
    if node.unschedulable:
        return False
    selector = pod_spec.get("nodeSelector") or {}
    if any(node.labels.get(key) != value for key, value in selector.items()):
        return False
    if not _affinity_allows(pod_spec, node.labels):
        return False
    tolerations = pod_spec.get("tolerations") or []
    return all(_tolerated(t, tolerations) for t in node.taints if t.effect in ("NoSchedule", "NoExecute"))


def shortfall(nodes: Iterable[NodeView], used: Mapping[str, Mapping[str, int]], pod_spec: Mapping[str, Any],
              replicas: int) -> str | None:
    """Why `replicas` pods of `pod_spec` cannot all fit now (None: they fit, or ask for no extended
    resource). `used[node][resource]`: what the pods bound to that node already request."""
    asked = pod_requests(pod_spec)
    if not asked or replicas <= 0:
        return None
    eligible = [node for node in nodes if can_land(node, pod_spec)]
    fit = 0
    for node in eligible:
        free = {name: node.allocatable.get(name, 0) - used.get(node.name, {}).get(name, 0) for name in asked}
        fit += min(max(0, free[name]) // amount for name, amount in asked.items())
    if fit >= replicas:
        return None
    missing = ", ".join(f"{(replicas - fit) * amount} {name}" for name, amount in asked.items())
    where = f"{len(eligible)} node{'s' if len(eligible) != 1 else ''} its template can land on"
    unread = "; ".join(f"node {node.name}: {', '.join(node.unreadable)}" for node in eligible
                       if any(entry.split("=", 1)[0] in asked for entry in node.unreadable))
    return (f"{fit} of {replicas} candidate pods fit: {missing} missing "
            f"({', '.join(f'{amount} {name}' for name, amount in asked.items())} a pod; {where})"
            + (f"; allocatable not readable as a quantity, counted as none: {unread}" if unread else ""))


def swap_candidate(replicas: int, weight: int) -> int:
    """Under capacity swap, the candidate's pods at `weight` percent: its share of `replicas`, rounded up, and
    at least one (a shadow or 0% step still runs it); the stable gives up exactly as many."""
    return max(1, -(-replicas * weight // 100))
