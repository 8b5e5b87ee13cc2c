"""Istio VirtualService: route weights, mirror with mirrorPercentage, header-match route."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client

from controller.routers.base import HeaderRoute, RouterError
from controller.routers.retry import CustomObject

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"


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


class IstioRouter:
    kind = "istio"

    def __init__(self, api_client: client.ApiClient, namespace: str, virtual_service: str, stable: str,
                 candidate: str, port: int, route_name: str | None = None) -> None:
        self.vs = CustomObject(api_client, GROUP, VERSION, PLURAL, namespace, virtual_service)
        self.stable, self.candidate, self.port, self.route_name = stable, candidate, port, route_name

    @property
    def api_calls(self) -> int:
        return self.vs.calls

    def set_route(self, weight: int, mirror: int, header: HeaderRoute | None = None) -> None:
        def change(vs: dict[str, Any]) -> dict[str, Any]:
            routed = with_route(vs, self.stable, self.candidate, self.port, weight, mirror, self.route_name)
            return with_header_route(routed, self.stable, self.candidate, self.port, header, self.route_name)

        stored = self.vs.update(change)
        # The write's answer is the stored object: verifying it costs no extra request.
        seen = read_route(stored, self.stable, self.candidate, self.route_name)
        if seen != (weight, mirror):
            raise RouterError(f"route stores weight/mirror {seen} after writing {(weight, mirror)}")

    def set_header_route(self, route: HeaderRoute | None) -> None:
        self.vs.update(lambda vs: with_header_route(vs, self.stable, self.candidate, self.port, route,
                                                    self.route_name))

    def verify(self, weight: int, mirror: int) -> bool | None:
        return read_route(self.vs.read(), self.stable, self.candidate, self.route_name) == (weight, mirror)

    def remove_managed_routes(self) -> None:
        self.set_header_route(None)
