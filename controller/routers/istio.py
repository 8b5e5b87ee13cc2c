"""Istio VirtualService: route weights, mirror with mirrorPercentage, header-match route."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubernetes import client

from controller.routers.base import HeaderRoute, RouterError
from controller.routers.object_router import ObjectRouter, RouteBuilders
from controller.runtime.cache import VIRTUALSERVICES
from controller.runtime.own_writes import OwnWrites

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", VIRTUALSERVICES


def _host(destination: dict[str, Any]) -> str:
    # "scorer-stable" and "scorer-stable.ns.svc.cluster.local" name the same Service.
    return str(destination.get("destination", {}).get("host", "")).split(".")[0]


def managed_route_index(vs: dict[str, Any], stable: str, candidate: str, route_name: str | None) -> int:
    for index, http in enumerate(vs.get("spec", {}).get("http", [])):
        if route_name is not None:
            if http.get("name") == route_name:
                return index
        elif any(_host(d) in (stable, candidate) for d in http.get("route", [])) and not str(
            http.get("name", "")
        ).endswith("-modelrollout-header"):
            return index
    wanted = f"named {route_name!r}" if route_name else f"with a destination host {stable!r}"
    raise RouterError(f"VirtualService {vs['metadata']['name']} has no http route {wanted}")


def with_route(vs: dict[str, Any], stable: str, candidate: str, port: int, weight: int, mirror: int,
               route_name: str | None = None) -> dict[str, Any]:
    updated = copy.deepcopy(vs)
    http = updated["spec"]["http"][managed_route_index(vs, stable, candidate, route_name)]
    others = [d for d in http.get("route", []) if _host(d) not in (stable, candidate)]
    http["route"] = [
        {"destination": {"host": stable, "port": {"number": port}}, "weight": 100 - weight},
        {"destination": {"host": candidate, "port": {"number": port}}, "weight": weight},
        *others,
    ]
    if mirror > 0:
        http["mirror"] = {"host": candidate, "port": {"number": port}}
        http["mirrorPercentage"] = {"value": float(mirror)}
    elif str(http.get("mirror", {}).get("host", "")).split(".")[0] == candidate:
        http.pop("mirror", None)
        http.pop("mirrorPercentage", None)
    return updated


def read_route(vs: dict[str, Any], stable: str, candidate: str, route_name: str | None = None) -> tuple[int, int]:
    http = vs["spec"]["http"][managed_route_index(vs, stable, candidate, route_name)]
    weights = {_host(d): d.get("weight", 0) for d in http.get("route", [])}
    weight = weights.get(candidate, 0)
    mirrored = str(http.get("mirror", {}).get("host", "")).split(".")[0] == candidate
    mirror = round(http.get("mirrorPercentage", {}).get("value", 100.0)) if mirrored else 0
    return weight, mirror


def with_header_route(vs: dict[str, Any], stable: str, candidate: str, port: int,
                      header: HeaderRoute | None, route_name: str | None = None) -> dict[str, Any]:
    updated = copy.deepcopy(vs)
    name = f"{candidate}-modelrollout-header"
    routes = [http for http in updated["spec"]["http"] if http.get("name") != name]
    if header is not None:
        routes.insert(0, {
            "name": name,
            "match": [{"headers": {header.header: {"exact": header.value}}}],
            "route": [{"destination": {"host": candidate, "port": {"number": port}}, "weight": 100}],
        })
    updated["spec"]["http"] = routes
    return updated


BUILDERS = RouteBuilders("istio", GROUP, VERSION, PLURAL, with_route, with_header_route, read_route)


def IstioRouter(api_client: client.ApiClient, namespace: str, name: str, stable: str, candidate: str, port: int,
        route_name: str | None, cached: Callable[[], dict[str, Any] | None], own_writes: OwnWrites) -> ObjectRouter:
    return ObjectRouter(BUILDERS, api_client, namespace, name, stable, candidate, port, route_name, cached, own_writes)
