"""What the reconciler reads, from watch-fed caches (Kopf indexes), never from a GET per tick.

The index functions turn each watched object into a small frozen view, so the
cache holds what the reconciler reads and nothing more. `Cache` reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from controller import api
from controller.capacity import NodeView, pod_gpus, shortfall

log = structlog.get_logger()

ROLLOUT_LABEL = f"{api.GROUP}/rollout"
REVISION_LABEL = f"{api.GROUP}/revision"
# A rollout's static shard, copied to its Deployments: a shard's replicas watch only their own.
SHARD_LABEL = f"{api.GROUP}/shard"

# The route kinds' plurals: the first part of a RouteKey (the routers use the same names).
HTTPROUTES, VIRTUALSERVICES = "httproutes", "virtualservices"
GATEWAY_GROUP = "gateway.networking.k8s.io"
RolloutKey = tuple[str, str]  # (namespace, name)
RouteKey = tuple[str, str, str]  # (plural, namespace, name)


@dataclass(frozen=True)
class DeploymentView:
    name: str
    revision: str
    replicas: int
    ready: int
    gpus_per_pod: int
    owner_uids: frozenset[str]
    resource_version: str


@dataclass(frozen=True)
class ServiceView:
    name: str
    selector: Mapping[str, str] | None
    # The rollout named by our label, if any: our label or our owner reference makes it ours.
    rollout_label: str | None
    owner_uids: frozenset[str]
    resource_version: str


@dataclass(frozen=True)
class GatewayView:
    """A Gateway's Accepted and Programmed conditions: (status, reason, message), or None before any."""

    accepted: tuple[str, str, str] | None
    programmed: tuple[str, str, str] | None


def gateway_view(body: Mapping[str, Any]) -> GatewayView:
    found = {c.get("type"): (str(c.get("status", "Unknown")), str(c.get("reason", "")), str(c.get("message", "")))
             for c in (body.get("status") or {}).get("conditions") or []}
    return GatewayView(found.get("Accepted"), found.get("Programmed"))


def ready_endpoints(body: Mapping[str, Any]) -> int:
    """An EndpointSlice's endpoints that take traffic (an unset `ready` means ready, as the API says)."""
    return sum(1 for endpoint in body.get("endpoints") or []
               if (endpoint.get("conditions") or {}).get("ready") is not False)


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, plain copy of a Kopf body view (lists and dicts only), without managedFields: they are
    most of an object's bytes, nothing here reads them, and an update that omits them keeps them."""
    def copy(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: copy(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [copy(item) for item in value]
        return value

    result: dict[str, Any] = copy(body)
    result.get("metadata", {}).pop("managedFields", None)
    return result


def owner_uids(meta: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(ref.get("uid")) for ref in meta.get("ownerReferences") or [])


def deployment_view(body: Mapping[str, Any]) -> DeploymentView | None:
    meta = body.get("metadata", {})
    labels = meta.get("labels") or {}
    revision = labels.get(REVISION_LABEL)
    if revision is None:
        return None
    try:
        gpus = pod_gpus((body.get("spec") or {}).get("template") or {})
    except ValueError as error:  # Kept in the index: its readiness matters more than its GPUs.
        log.warning("deployment's GPUs not readable; counted as none", name=meta.get("name"), error=str(error))
        gpus = 0
    return DeploymentView(
        name=meta["name"], revision=revision, replicas=int((body.get("spec") or {}).get("replicas") or 0),
        ready=int((body.get("status") or {}).get("readyReplicas") or 0),
        gpus_per_pod=gpus, owner_uids=owner_uids(meta),
        resource_version=str(meta.get("resourceVersion", "")),
    )


def service_view(body: Mapping[str, Any]) -> ServiceView:
    meta = body.get("metadata", {})
    selector = (body.get("spec") or {}).get("selector")
    return ServiceView(
        name=meta["name"], selector=dict(selector) if selector is not None else None,
        rollout_label=(meta.get("labels") or {}).get(ROLLOUT_LABEL), owner_uids=owner_uids(meta),
        resource_version=str(meta.get("resourceVersion", "")),
    )


def unschedulable_message(body: Mapping[str, Any]) -> str | None:
    """The scheduler's message when a pod is Pending because it cannot be placed."""
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return str(condition.get("message", "Unschedulable"))
    return None


def route_key(spec: Mapping[str, Any], namespace: str) -> RouteKey | None:
    routing = spec.get("trafficRouting") or {}
    if routing.get("gatewayAPI"):
        return (HTTPROUTES, namespace, str(routing["gatewayAPI"].get("httpRoute", "")))
    if routing.get("istio"):
        return (VIRTUALSERVICES, namespace, str(routing["istio"].get("virtualService", "")))
    return None


def parent_gateways(route: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(namespace, name) of each Gateway an HTTPRoute's parentRefs name (namespace defaults to the route's)."""
    namespace = str((route.get("metadata") or {}).get("namespace", ""))
    return [(str(ref.get("namespace") or namespace), str(ref.get("name", "")))
            for ref in (route.get("spec") or {}).get("parentRefs") or []
            if ref.get("kind", "Gateway") == "Gateway" and ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP]


# A Kopf index: key -> a store of the values indexed under it.
Index = Mapping[Any, Iterable[Any]]


def _all(index: Index, key: Any) -> tuple[Any, ...]:
    """The values filed under `key`, copied first: the loop thread may add to a store while a worker reads it."""
    return tuple(index[key]) if key in index else ()


def _one(index: Index, key: Any) -> Any | None:
    return next(iter(_all(index, key)), None)


@dataclass(frozen=True)
class Cache:
    """Read access to the indexes (live views: they change as watch events arrive)."""

    rollouts: Index  # RolloutKey -> plain body
    rollouts_by_route: Index  # RouteKey -> RolloutKey
    deployments: Index  # RolloutKey -> DeploymentView
    services: Index  # (namespace, name) -> ServiceView
    unschedulable: Index  # (namespace, rollout, revision) -> message
    routes: Mapping[str, Index]  # plural -> (RouteKey -> plain body)
    # Gateway API Gateways: (namespace, name) -> GatewayView; our Services' EndpointSlices:
    # (namespace, Service name) -> ready endpoints, one value per slice.
    gateways: Index | None = None
    endpoints: Index | None = None
    # Capacity, when the operator watches nodes (cluster-wide): node name -> NodeView, and
    # node name -> the extended resources each pod bound to it requests.
    nodes: Index | None = None
    node_usage: Index | None = None

    def rollout(self, key: RolloutKey) -> dict[str, Any] | None:
        body: dict[str, Any] | None = _one(self.rollouts, key)
        return body

    def rollout_keys(self) -> list[RolloutKey]:
        return list(self.rollouts)

    def deployments_of(self, namespace: str, rollout: str) -> tuple[DeploymentView, ...]:
        return tuple(_all(self.deployments, (namespace, rollout)))

    def deployment(self, namespace: str, rollout: str, revision: str) -> DeploymentView | None:
        return next((view for view in _all(self.deployments, (namespace, rollout)) if view.revision == revision), None)

    def service(self, namespace: str, name: str) -> ServiceView | None:
        view: ServiceView | None = _one(self.services, (namespace, name))
        return view

    def unschedulable_reason(self, namespace: str, rollout: str, revision: str) -> str | None:
        message: str | None = _one(self.unschedulable, (namespace, rollout, revision))
        return message

    def route(self, key: RouteKey) -> dict[str, Any] | None:
        body: dict[str, Any] | None = _one(self.routes[key[0]], key) if key[0] in self.routes else None
        return body

    def gateway(self, namespace: str, name: str) -> GatewayView | None:
        view: GatewayView | None = _one(self.gateways, (namespace, name)) if self.gateways is not None else None
        return view

    def ready_endpoints(self, namespace: str, service: str) -> int | None:
        """Ready endpoints across the Service's EndpointSlices; None: no slice seen for it."""
        if self.endpoints is None or (namespace, service) not in self.endpoints:
            return None
        return sum(int(count) for count in _all(self.endpoints, (namespace, service)))

    def routes_of_gateway(self, namespace: str, name: str) -> list[RouteKey]:
        """The HTTPRoutes whose parentRefs name the Gateway (a scan: Gateways change rarely)."""
        index = self.routes.get(HTTPROUTES) or {}
        return [key for key in list(index) for body in _all(index, key)
                if (namespace, name) in parent_gateways(body)]

    def users_of_route(self, key: RouteKey) -> list[RolloutKey]:
        return list(_all(self.rollouts_by_route, key))

    def capacity_shortfall(self, pod_spec: Mapping[str, Any], replicas: int) -> str | None:
        """Why `replicas` pods of `pod_spec` would not fit now; None when they would, or unknown."""
        if self.nodes is None or self.node_usage is None:
            return None
        nodes: list[NodeView] = [view for name in list(self.nodes) for view in _all(self.nodes, name)]
        used: dict[str, dict[str, int]] = {}
        for name in list(self.node_usage):
            for requests in _all(self.node_usage, name):
                totals = used.setdefault(name, {})
                for resource, amount in requests.items():
                    totals[resource] = totals.get(resource, 0) + amount
        return shortfall(nodes, used, pod_spec, replicas)
