"""Gateway API HTTPRoute: backendRefs weights, a RequestMirror filter with percent, header matches."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubernetes import client

from controller.routers.base import HeaderRoute, RouterError
from controller.routers.object_router import ObjectRouter, RouteBuilders
from controller.runtime.cache import HTTPROUTES
from controller.runtime.own_writes import OwnWrites

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", HTTPROUTES


def _is_ours(ref: dict[str, Any], services: tuple[str, str]) -> bool:
    return ref.get("name") in services and ref.get("kind", "Service") == "Service" and not ref.get("group")


def managed_rule_index(route: dict[str, Any], stable: str, candidate: str, rule_name: str | None) -> int:
    rules = route.get("spec", {}).get("rules", [])
    for index, rule in enumerate(rules):
        if rule_name is not None:
            if rule.get("name") == rule_name:
                return index
        elif any(_is_ours(ref, (stable, candidate)) for ref in rule.get("backendRefs", [])) and not rule.get(
            "name", ""
        ).endswith("-modelrollout-header"):
            return index
    wanted = f"named {rule_name!r}" if rule_name else f"with a backendRef to Service {stable!r}"
    raise RouterError(f"HTTPRoute {route['metadata']['name']} has no rule {wanted}")


def with_route(route: dict[str, Any], stable: str, candidate: str, port: int, weight: int, mirror: int,
               rule_name: str | None = None) -> dict[str, Any]:
    """The HTTPRoute with our rule's weights and mirror set; every other rule and filter untouched."""
    updated = copy.deepcopy(route)
    rule = updated["spec"]["rules"][managed_rule_index(route, stable, candidate, rule_name)]
    others = [ref for ref in rule.get("backendRefs", []) if not _is_ours(ref, (stable, candidate))]
    # group and kind spelled out as the apiserver defaults them, so an unchanged route compares equal.
    rule["backendRefs"] = [
        {"group": "", "kind": "Service", "name": stable, "port": port, "weight": 100 - weight},
        {"group": "", "kind": "Service", "name": candidate, "port": port, "weight": weight},
        *others,
    ]
    filters = [f for f in rule.get("filters", []) if not _is_our_mirror(f, candidate)]
    if mirror > 0:
        filters.append({"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": candidate, "port": port}, "percent": mirror}})
    if filters:
        rule["filters"] = filters
    else:
        rule.pop("filters", None)
    return updated


def _is_our_mirror(filter_: dict[str, Any], candidate: str) -> bool:
    return filter_.get("type") == "RequestMirror" and filter_.get("requestMirror", {}).get(
        "backendRef", {}).get("name") == candidate


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
    name = f"{candidate}-modelrollout-header"
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


BUILDERS = RouteBuilders("gatewayAPI", GROUP, VERSION, PLURAL, with_route, with_header_route, read_route)


def GatewayAPIRouter(api_client: client.ApiClient, namespace: str, name: str, stable: str, candidate: str, port: int,
        rule_name: str | None, cached: Callable[[], dict[str, Any] | None], own_writes: OwnWrites) -> ObjectRouter:
    return ObjectRouter(BUILDERS, api_client, namespace, name, stable, candidate, port, rule_name, cached, own_writes)
