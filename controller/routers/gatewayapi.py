"""Gateway API HTTPRoute: backendRefs weights, a RequestMirror filter with percent, header matches."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubernetes import client

from controller.api import RouteAcceptance
from controller.engine.observations import RouteServing
from controller.kube.cache import GATEWAY_GROUP, HTTPROUTES, GatewayView
from controller.kube.own_writes import OwnWrites
from controller.routers.base import HeaderRoute
from controller.routers.object_router import ObjectRouter, RouteBuilders, writable
from controller.routers.ownership import HEADER_SUFFIX, RouteShape, mirror_targets, recorded, serves_whole_rule

GROUP, VERSION, PLURAL = GATEWAY_GROUP, "v1", HTTPROUTES


def _service_of(ref: dict[str, Any]) -> str | None:
    return str(ref.get("name")) if ref.get("kind", "Service") == "Service" and not ref.get("group") else None


def _is_our_mirror(filter_: dict[str, Any], candidate: str) -> bool:
    return filter_.get("type") == "RequestMirror" and filter_.get("requestMirror", {}).get(
        "backendRef", {}).get("name") in mirror_targets(candidate)


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
               rule_name: str | None = None, mirror_to: str | None = None) -> dict[str, Any]:
    """The HTTPRoute with our rule's weights and mirror (to `mirror_to`, default the candidate) set; every
    other rule and filter untouched."""
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
            "backendRef": {"group": "", "kind": "Service", "name": mirror_to or candidate, "port": port},
            "percent": mirror}}]
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


def _parent_key(ref: dict[str, Any], namespace: str) -> tuple[str, str, str, str, str, str]:
    return (str(ref.get("group", GROUP)), str(ref.get("kind", "Gateway")), str(ref.get("namespace") or namespace),
            str(ref.get("name", "")), str(ref.get("sectionName", "")), str(ref.get("port", "")))


def serving(route: dict[str, Any], gateway: Callable[[str, str], GatewayView | None],
            services: tuple[str, ...]) -> RouteServing:
    """Whether the route's parents serve it, from the Gateways' conditions and the route's
    `status.parents` (Gateway API, GEP-1364). Any parent's refusal is False; a parent nobody has
    reported on is Unknown (a route without a controller is still written, and said to be unwatched).
    A Gateway that is not Programmed is said, not held on: one without an assigned address (a cluster
    without a load balancer) serves all the same.

    `ResolvedRefs` is route-wide: a refusal only when its message names one of the rollout's
    `services`; another rule's missing backend is said, and its own share fails alone."""
    namespace = str(route.get("metadata", {}).get("namespace", ""))
    reports = {_parent_key(parent.get("parentRef") or {}, namespace): parent.get("conditions") or []
               for parent in (route.get("status") or {}).get("parents") or []}
    refusals: list[tuple[RouteAcceptance, str]] = []
    silent: list[str] = []
    names: list[str] = []
    others: list[str] = []
    for ref in route.get("spec", {}).get("parentRefs") or []:
        key = _parent_key(ref, namespace)
        named = f"{key[1]} {key[2]}/{key[3]}" + (f" ({key[4]})" if key[4] else "")
        names.append(named)
        view = gateway(key[2], key[3]) if key[:2] == (GROUP, "Gateway") else None
        if view is not None and view.accepted is not None and view.accepted[0] == "False":
            refusals.append((RouteAcceptance.GATEWAY_NOT_ACCEPTED,
                             f"{named} is not Accepted: {view.accepted[1]}: {view.accepted[2]}".rstrip(": ")))
        if view is not None and view.programmed is not None and view.programmed[0] == "False":
            # Said, not held: a Gateway without an assigned address (no load balancer) still serves.
            others.append(f"{named} is not Programmed ({view.programmed[1]}: {view.programmed[2]})")
        found = {c.get("type"): c for c in reports.get(key, [])}
        accepted, resolved = found.get("Accepted") or {}, found.get("ResolvedRefs") or {}
        unresolved = f"{resolved.get('reason')}: {resolved.get('message')}"
        if accepted.get("status") == "False":
            refusals.append((RouteAcceptance.ROUTE_NOT_ACCEPTED,
                             f"{named} does not accept the route: {accepted.get('reason')}: {accepted.get('message')}"))
        elif resolved.get("status") == "False" and any(service in unresolved for service in services):
            refusals.append((RouteAcceptance.REFS_NOT_RESOLVED,
                             f"{named} cannot resolve the rollout's backends: {unresolved}"))
        elif accepted.get("status") != "True":
            silent.append(named)
        elif resolved.get("status") == "False":
            others.append(f"{named} cannot resolve another backend ({unresolved})")
    if refusals:
        return RouteServing("False", refusals[0][0], "; ".join(message for _, message in refusals))
    if silent or not names:
        return RouteServing("Unknown", RouteAcceptance.NOT_REPORTED,
                            f"no gateway has reported on the route for {', '.join(silent) or 'any parent'}: "
                            "the rollout cannot see whether its weights are served")
    return RouteServing("True", RouteAcceptance.ACCEPTED, "; ".join([f"accepted by {', '.join(names)}", *others]))
