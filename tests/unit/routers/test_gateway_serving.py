"""What a route's gateways say of it, read from the Gateways' conditions and the route's status.parents."""

from __future__ import annotations

from typing import Any

from controller.api import RouteAcceptance
from controller.kube.cache import GatewayView, gateway_view, parent_gateways, ready_endpoints
from controller.routers.gatewayapi import serving

OURS = ("scorer-stable", "scorer-candidate")
ACCEPTED_GATEWAY = GatewayView(("True", "Accepted", ""), ("True", "Programmed", ""))


def route(parents: list[dict[str, Any]], reports: list[tuple[dict[str, Any], dict[str, str]]]) -> dict[str, Any]:
    return {"metadata": {"namespace": "apps", "name": "scorer"}, "spec": {"parentRefs": parents}, "status": {
        "parents": [{"parentRef": ref, "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
                     "conditions": [{"type": type_, "status": status, "reason": type_ if status == "True" else
                                     "Refused", "message": f"{type_} says {status}"}
                                    for type_, status in conditions.items()]}
                    for ref, conditions in reports]}}


def gateways(**views: GatewayView) -> Any:
    return lambda namespace, name: views.get(f"{namespace}_{name}")


def test_a_route_every_parent_accepted_is_served() -> None:
    found = serving(route([{"name": "gateway"}], [({"name": "gateway", "namespace": "apps"},
                                                   {"Accepted": "True", "ResolvedRefs": "True"})]),
                    gateways(apps_gateway=ACCEPTED_GATEWAY), OURS)
    assert (found.status, found.reason) == ("True", RouteAcceptance.ACCEPTED)
    assert found.message == "accepted by Gateway apps/gateway"


def test_a_listener_that_is_not_there_is_the_controllers_refusal_with_its_reason() -> None:
    ref = {"name": "gateway", "sectionName": "nope"}
    found = serving(route([ref], [(ref, {"Accepted": "False", "ResolvedRefs": "True"})]),
                    gateways(apps_gateway=ACCEPTED_GATEWAY), OURS)
    assert (found.status, found.reason) == ("False", RouteAcceptance.ROUTE_NOT_ACCEPTED)
    assert found.message == "Gateway apps/gateway (nope) does not accept the route: Refused: Accepted says False"


def test_a_gateway_that_is_not_accepted_refuses_its_routes_and_one_not_programmed_is_said() -> None:
    ref = {"name": "gateway", "namespace": "infra"}
    reports = [(ref, {"Accepted": "True"})]
    refused = serving(route([ref], reports), gateways(
        infra_gateway=GatewayView(("False", "InvalidParameters", "no such EnvoyProxy"), None)), OURS)
    assert (refused.status, refused.reason) == ("False", RouteAcceptance.GATEWAY_NOT_ACCEPTED)
    assert refused.message == "Gateway infra/gateway is not Accepted: InvalidParameters: no such EnvoyProxy"
    # Envoy Gateway's words for a Gateway of a cluster without a load balancer: it serves all the same.
    unaddressed = GatewayView(("True", "Accepted", ""), ("False", "AddressNotAssigned", "No addresses have been "
                                                                  "assigned to the Gateway"))
    found = serving(route([ref], reports), gateways(infra_gateway=unaddressed), OURS)
    assert (found.status, found.reason) == ("True", RouteAcceptance.ACCEPTED)
    assert "is not Programmed (AddressNotAssigned: " in found.message


def test_unresolved_backends_are_a_refusal_when_they_are_the_rollouts() -> None:
    ref = {"name": "gateway"}
    unresolved = route([ref], [(ref, {"Accepted": "True", "ResolvedRefs": "False"})])
    message = "Failed to process route rule 1 backendRef 1: service apps/scorer-candidate not found."
    unresolved["status"]["parents"][0]["conditions"][1]["message"] = message
    found = serving(unresolved, gateways(), OURS)
    assert (found.status, found.reason) == ("False", RouteAcceptance.REFS_NOT_RESOLVED)
    assert found.message.endswith(message)
    # Another rule's backend: the route is served, and the condition says what is missing.
    unresolved["status"]["parents"][0]["conditions"][1]["message"] = "service apps/health not found."
    found = serving(unresolved, gateways(), OURS)
    assert (found.status, found.reason) == ("True", RouteAcceptance.ACCEPTED)
    assert found.message == ("accepted by Gateway apps/gateway; Gateway apps/gateway cannot resolve another "
                             "backend (Refused: service apps/health not found.)")


def test_a_parent_nobody_reported_on_is_unknown_even_beside_an_accepting_one() -> None:
    first, second = {"name": "gateway"}, {"name": "other", "namespace": "edge"}
    found = serving(route([first, second], [(first, {"Accepted": "True"})]), gateways(), OURS)
    assert (found.status, found.reason) == ("Unknown", RouteAcceptance.NOT_REPORTED)
    assert "Gateway edge/other" in found.message and "Gateway apps/gateway" not in found.message
    assert serving(route([], []), gateways(), OURS).status == "Unknown", "a route without parents is served by no one"


def test_the_cache_reads_gateway_conditions_parents_and_ready_endpoints() -> None:
    body = {"status": {"conditions": [{"type": "Accepted", "status": "False", "reason": "Invalid", "message": "m"}]}}
    assert gateway_view(body) == GatewayView(("False", "Invalid", "m"), None)
    assert parent_gateways(route([{"name": "g"}, {"name": "s", "kind": "Service", "group": ""},
                                  {"name": "h", "namespace": "edge"}], [])) == [("apps", "g"), ("edge", "h")]
    assert ready_endpoints({"endpoints": [{"conditions": {"ready": True}}, {"conditions": {}},
                                          {"conditions": {"ready": False}}]}) == 2
    assert ready_endpoints({"endpoints": None}) == 0
