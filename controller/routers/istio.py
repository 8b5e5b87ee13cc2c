"""Istio VirtualService: route weights, mirror with mirrorPercentage, header-match route."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubernetes import client

from controller.kube.cache import VIRTUALSERVICES
from controller.kube.own_writes import OwnWrites
from controller.routers.base import HeaderRoute
from controller.routers.object_router import ObjectRouter, RouteBuilders, writable
from controller.routers.ownership import HEADER_SUFFIX, RouteShape, mirror_targets, recorded, serves_whole_rule

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", VIRTUALSERVICES


def _host(destination: dict[str, Any]) -> str:
    # "scorer-stable" and "scorer-stable.ns.svc.cluster.local" name the same Service.
    return str(destination.get("destination", {}).get("host", "")).split(".")[0]


def _mirrors_to(http: dict[str, Any], candidate: str) -> bool:
    return str(http.get("mirror", {}).get("host", "")).split(".")[0] in mirror_targets(candidate)


def _without_our_mirror(http: dict[str, Any], candidate: str) -> dict[str, Any]:
    updated = dict(http)
    if _mirrors_to(http, candidate):
        updated.pop("mirror", None)
        updated.pop("mirrorPercentage", None)
    return updated


SHAPE = RouteShape("VirtualService", "http", "route", "http route", _host, _without_our_mirror)


def managed_route_index(vs: dict[str, Any], stable: str, candidate: str, route_name: str | None) -> int:
    return writable(vs, SHAPE, stable, candidate, route_name)[1]


def with_route(vs: dict[str, Any], stable: str, candidate: str, port: int, weight: int, mirror: int,
               route_name: str | None = None, mirror_to: str | None = None) -> dict[str, Any]:
    found, index = writable(vs, SHAPE, stable, candidate, route_name)
    updated = copy.deepcopy(recorded(vs, SHAPE, found, stable, candidate))
    http = _without_our_mirror(updated["spec"]["http"][index], candidate)
    others = [] if serves_whole_rule(updated, stable) else [
        d for d in http.get("route", []) if _host(d) not in (stable, candidate)]
    http["route"] = [
        {"destination": {"host": stable, "port": {"number": port}}, "weight": 100 - weight},
        {"destination": {"host": candidate, "port": {"number": port}}, "weight": weight},
        *others,
    ]
    if mirror > 0:
        http["mirror"] = {"host": mirror_to or candidate, "port": {"number": port}}
        http["mirrorPercentage"] = {"value": float(mirror)}
    updated["spec"]["http"][index] = http
    return updated


def read_route(vs: dict[str, Any], stable: str, candidate: str, route_name: str | None = None) -> tuple[int, int]:
    http = vs["spec"]["http"][managed_route_index(vs, stable, candidate, route_name)]
    weights = {_host(d): d.get("weight", 0) for d in http.get("route", [])}
    weight = weights.get(candidate, 0)
    mirror = round(http.get("mirrorPercentage", {}).get("value", 100.0)) if _mirrors_to(http, candidate) else 0
    return weight, mirror


def with_header_route(vs: dict[str, Any], stable: str, candidate: str, port: int,
                      header: HeaderRoute | None, route_name: str | None = None) -> dict[str, Any]:
    updated = copy.deepcopy(vs)
    name = f"{candidate}{HEADER_SUFFIX}"
    routes = [http for http in updated["spec"]["http"] if http.get("name") != name]
    if header is not None:
        routes.insert(0, {
            "name": name,
            "match": [{"headers": {header.header: {"exact": header.value}}}],
            "route": [{"destination": {"host": candidate, "port": {"number": port}}, "weight": 100}],
        })
    updated["spec"]["http"] = routes
    return updated


BUILDERS = RouteBuilders("istio", GROUP, VERSION, PLURAL, SHAPE, with_route, with_header_route, read_route)


def IstioRouter(api_client: client.ApiClient, namespace: str, name: str, stable: str, candidate: str, port: int,
        route_name: str | None, cached: Callable[[], dict[str, Any] | None], own_writes: OwnWrites) -> ObjectRouter:
    return ObjectRouter(BUILDERS, api_client, namespace, name, stable, candidate, port, route_name, cached, own_writes)
