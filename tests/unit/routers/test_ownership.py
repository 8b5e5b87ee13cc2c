"""Whose rule is it: a rollout writes only a rule that sends traffic to its own -stable Service or
was handed to it, notices its owner taking it back, and gives it back as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.api import RouteAccess
from controller.routers import RouteRefused, gatewayapi, istio
from controller.routers.ownership import HANDED_TO, MANAGED, access, release

S, C = "scorer-stable", "scorer-candidate"


def httproute(backend: str = S, **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "shared", "annotations": annotations},
            "spec": {"rules": [
                {"name": "team-b", "matches": [{"path": {"type": "PathPrefix", "value": "/b"}}],
                 "backendRefs": [{"name": "team-b-model", "port": 80}]},
                {"name": "ours", "backendRefs": [{"name": backend, "port": 8080}]},
            ]}}


def virtualservice(backend: str = S, **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "shared", "annotations": annotations},
            "spec": {"http": [
                {"name": "team-b", "route": [{"destination": {"host": "team-b-model"}}]},
                {"name": "ours", "route": [{"destination": {"host": f"{backend}.ns.svc.cluster.local"}}],
                 "timeout": "2s"},
            ]}}


ROUTERS = [(gatewayapi, httproute), (istio, virtualservice)]


@pytest.mark.parametrize(("module", "make"), ROUTERS)
def test_another_teams_rule_is_refused_by_name_and_nothing_is_built(module: Any, make: Any) -> None:
    route = make()
    with pytest.raises(RouteRefused, match="'team-b' sends no traffic to Service scorer-stable") as refused:
        module.with_route(route, S, C, 8080, 0, 0, "team-b")
    assert refused.value.access == RouteAccess.NOT_OURS
    assert access(route, module.SHAPE, S, C, "team-b").state == RouteAccess.NOT_OURS
    # Without a name the rollout finds its own rule, never the other team's.
    assert access(route, module.SHAPE, S, C, None).index == 1


@pytest.mark.parametrize(("module", "make"), ROUTERS)
def test_a_rule_handed_over_by_annotation_is_managed_and_given_back_as_it_was(module: Any, make: Any) -> None:
    route = make(backend="model-v1", **{HANDED_TO: "other, scorer"})
    shape = module.SHAPE
    assert access(route, shape, S, C, "ours").state == RouteAccess.HANDED
    assert access(route, shape, S, C, None).state == RouteAccess.NOT_OURS, "two rules: the hand-over names one"
    managed = module.with_route(route, S, C, 8080, 30, 20, "ours")
    assert module.read_route(managed, S, C, "ours") == (30, 20)
    backends = [shape.service_of(ref) for ref in managed["spec"][shape.rules_field][1][shape.refs_field]]
    assert backends == [S, C], "a handed rule is the rollout's whole: its own backend steps aside meanwhile"
    again = module.with_route(managed, S, C, 8080, 50, 0, "ours")
    assert [shape.service_of(ref) for ref in again["spec"][shape.rules_field][1][shape.refs_field]] == [S, C]
    assert access(managed, shape, S, C, "ours").state == RouteAccess.MANAGED
    back = release(managed, shape, S, C, "ours")
    assert back.route == route, "the rule, the other rule and the annotations as they were"
    assert not back.names_our_services


@pytest.mark.parametrize(("module", "make"), ROUTERS)
def test_the_owner_taking_the_rule_back_is_noticed_and_never_overwritten(module: Any, make: Any) -> None:
    shape = module.SHAPE
    managed = module.with_route(make(), S, C, 8080, 50, 0, None)
    assert json.loads(managed["metadata"]["annotations"][MANAGED])["scorer"], "the original backends recorded"
    taken = json.loads(json.dumps(make(backend="team-a-v7")))
    taken["metadata"]["annotations"] = managed["metadata"]["annotations"]
    found = access(taken, shape, S, C, None)
    assert found.state == RouteAccess.TAKEN_BACK and "took it back" in found.message
    with pytest.raises(RouteRefused):
        module.with_route(taken, S, C, 8080, 0, 0, None)
    # Handing it back: the stable in the rule again.
    handed = json.loads(json.dumps(taken))
    handed["spec"][shape.rules_field][1] = make()["spec"][shape.rules_field][1]
    assert access(handed, shape, S, C, None).state == RouteAccess.MANAGED


@pytest.mark.parametrize(("module", "make"), ROUTERS)
def test_release_restores_the_rule_minus_our_backends_mirror_and_header_rule(module: Any, make: Any) -> None:
    from controller.routers import HeaderRoute
    original = make()
    managed = module.with_header_route(module.with_route(original, S, C, 8080, 40, 10, None), S, C, 8080,
                                       HeaderRoute("x-arm", "b"), None)
    back = release(managed, module.SHAPE, S, C, None)
    assert back.route["spec"] == original["spec"]
    assert MANAGED not in (back.route["metadata"].get("annotations") or {})
    assert back.names_our_services, "the rule named the stable before us: it still does"
    assert release(back.route, module.SHAPE, S, C, None).route == back.route, "idempotent"


@pytest.mark.parametrize(("module", "make"), ROUTERS)
def test_a_taken_back_rule_is_not_touched_by_release(module: Any, make: Any) -> None:
    managed = module.with_route(make(), S, C, 8080, 50, 0, None)
    taken = make(backend="team-a-v7")
    taken["metadata"]["annotations"] = managed["metadata"]["annotations"]
    back = release(taken, module.SHAPE, S, C, None)
    assert back.access == RouteAccess.TAKEN_BACK
    assert back.route["spec"] == taken["spec"]
    assert not back.names_our_services
