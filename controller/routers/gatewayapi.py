"""Gateway API HTTPRoute: backendRefs weights, a RequestMirror filter with percent, header matches."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubernetes import client

from controller.kube.cache import HTTPROUTES
from controller.kube.own_writes import OwnWrites
from controller.routers.base import HeaderRoute
from controller.routers.object_router import ObjectRouter, RouteBuilders, writable
from controller.routers.ownership import HEADER_SUFFIX, RouteShape, recorded, serves_whole_rule

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", HTTPROUTES


def _service_of(ref: dict[str, Any]) -> str | None:
    return str(ref.get("name")) if ref.get("kind", "Service") == "Service" and not ref.get("group") else None


def _is_our_mirror(filter_: dict[str, Any], candidate: str) -> bool:
    return filter_.get("type") == "RequestMirror" and filter_.get("requestMirror", {}).get(
        "backendRef", {}).get("name") == candidate


def _without_our_mirror(rule: dict[str, Any], candidate: str) -> dict[str, Any]:
    updated = dict(rule)
    filters = [f for f in rule.get("filters", []) if not _is_our_mirror(f, candidate)]
    if filters:
        updated["filters"] = filters
    else:
        updated.pop("filters", None)
    return updated


SHAPE = RouteShape("HTTPRoute", "rules", "backendRefs", "rule", _service_of, _without_our_mirror)


def managed_rule_index(route: dict[str, Any], stable: str, candidate: str, rule_name: str | None) -> int:
    return writable(route, SHAPE, stable, candidate, rule_name)[1]


def with_route(route: dict[str, Any], stable: str, candidate: str, port: int, weight: int, mirror: int,
               rule_name: str | None = None) -> dict[str, Any]:
    """The HTTPRoute with our rule's weights and mirror set; every other rule and filter untouched."""
    found, index = writable(route, SHAPE, stable, candidate, rule_name)
    updated = copy.deepcopy(recorded(route, SHAPE, found, stable, candidate))
    rule = _without_our_mirror(updated["spec"]["rules"][index], candidate)
    others = [] if serves_whole_rule(updated, stable) else [
        ref for ref in rule.get("backendRefs", []) if _service_of(ref) not in (stable, candidate)]
    # group and kind spelled out as the apiserver defaults them, so an unchanged route compares equal.
    rule["backendRefs"] = [
        {"group": "", "kind": "Service", "name": stable, "port": port, "weight": 100 - weight},
        {"group": "", "kind": "Service", "name": candidate, "port": port, "weight": weight},
        *others,
    ]
    if mirror > 0:
        rule["filters"] = [*rule.get("filters", []), {"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": candidate, "port": port}, "percent": mirror}}]
    updated["spec"]["rules"][index] = rule
    return updated


def read_route(route: dict[str, Any], stable: str, candidate: str, rule_name: str | None = None) -> tuple[int, int]:
    rule = route["spec"]["rules"][managed_rule_index(route, stable, candidate, rule_name)]
    weights = {ref["name"]: ref.get("weight", 1) for ref in rule.get("backendRefs", [])}
    total = weights.get(stable, 0) + weights.get(candidate, 0)
    weight = round(100 * weights.get(candidate, 0) / total) if total else 0
    mirror = next((f["requestMirror"].get("percent", 100) for f in rule.get("filters", [])
                   if _is_our_mirror(f, candidate)), 0)
    return weight, mirror


def with_header_route(route: dict[str, Any], stable: str, candidate: str, port: int,
                      header: HeaderRoute | None, rule_name: str | None = None) -> dict[str, Any]:
    updated = copy.deepcopy(route)
    name = f"{candidate}{HEADER_SUFFIX}"
    rules = [rule for rule in updated["spec"]["rules"] if rule.get("name") != name]
    if header is not None:
        # The index must be taken on the rules without our header rule: it is the list it indexes.
        without_header = {**updated, "spec": {**updated["spec"], "rules": rules}}
        base = rules[managed_rule_index(without_header, stable, candidate, rule_name)]
        matches = [{**match, "headers": [*match.get("headers", []),
                                        {"type": "Exact", "name": header.header, "value": header.value}]}
                   for match in base.get("matches", [{"path": {"type": "PathPrefix", "value": "/"}}])]
        rules.insert(0, {"name": name, "matches": matches,
                         "backendRefs": [{"name": candidate, "port": port, "weight": 1}]})
    updated["spec"]["rules"] = rules
    return updated


BUILDERS = RouteBuilders("gatewayAPI", GROUP, VERSION, PLURAL, SHAPE, with_route, with_header_route, read_route)


def GatewayAPIRouter(api_client: client.ApiClient, namespace: str, name: str, stable: str, candidate: str, port: int,
        rule_name: str | None, cached: Callable[[], dict[str, Any] | None], own_writes: OwnWrites) -> ObjectRouter:
    return ObjectRouter(BUILDERS, api_client, namespace, name, stable, candidate, port, rule_name, cached, own_writes)
