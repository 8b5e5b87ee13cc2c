"""The routers' pure builders: our rule changes, the user's rules never do, and writes are idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.engine.routes import candidate_replicas, effective_weight
from controller.routers import HeaderRoute, RouterError, gatewayapi, istio

S, C = "scorer-stable", "scorer-candidate"


def _httproute() -> dict[str, Any]:
    return {
        "metadata": {"name": "scorer"},
        "spec": {"rules": [
            {"name": "health", "matches": [{"path": {"type": "PathPrefix", "value": "/healthz"}}],
             "backendRefs": [{"name": "health", "port": 80}]},
            {"backendRefs": [{"name": S, "port": 8080, "weight": 100}],
             "filters": [{"type": "RequestHeaderModifier",
                          "requestHeaderModifier": {"add": [{"name": "x-team", "value": "ml"}]}}]},
        ]},
    }


def _vs() -> dict[str, Any]:
    return {
        "metadata": {"name": "scorer"},
        "spec": {"http": [
            {"name": "static", "route": [{"destination": {"host": "static"}}]},
            {"name": "primary", "route": [{"destination": {"host": f"{S}.ns.svc.cluster.local"}, "weight": 100}],
             "timeout": "2s"},
        ]},
    }


@given(weight=st.integers(0, 100), mirror=st.integers(0, 100))
def test_httproute_sets_weights_and_mirror_and_keeps_user_parts(weight: int, mirror: int) -> None:
    original = _httproute()
    route = gatewayapi.with_route(original, S, C, 8080, weight, mirror)
    assert gatewayapi.read_route(route, S, C) == (weight, mirror)
    assert route["spec"]["rules"][0] == original["spec"]["rules"][0]
    kinds = [f["type"] for f in route["spec"]["rules"][1]["filters"]]
    assert "RequestHeaderModifier" in kinds
    assert kinds.count("RequestMirror") == (1 if mirror else 0)
    assert gatewayapi.with_route(route, S, C, 8080, weight, mirror) == route, "idempotent"
    assert original == _httproute(), "the input is not mutated"


def test_httproute_rule_chosen_by_name_or_missing() -> None:
    route = _httproute()
    with pytest.raises(RouterError, match="no rule named 'primary'"):
        gatewayapi.with_route(route, S, C, 8080, 10, 0, rule_name="primary")
    route["spec"]["rules"][1]["name"] = "primary"
    assert gatewayapi.read_route(gatewayapi.with_route(route, S, C, 8080, 10, 0, "primary"), S, C, "primary") == (
        10, 0)


def test_httproute_header_route_is_added_first_and_removed() -> None:
    with_header = gatewayapi.with_header_route(_httproute(), S, C, 8080, HeaderRoute("x-arm", "candidate"))
    first = with_header["spec"]["rules"][0]
    assert first["backendRefs"] == [{"name": C, "port": 8080, "weight": 1}]
    assert {"type": "Exact", "name": "x-arm", "value": "candidate"} in first["matches"][0]["headers"]
    assert gatewayapi.read_route(with_header, S, C) == (0, 0), "the header rule is not the managed weight rule"
    removed = gatewayapi.with_header_route(with_header, S, C, 8080, None)
    assert removed["spec"]["rules"] == _httproute()["spec"]["rules"]


@given(weight=st.integers(0, 100), mirror=st.integers(0, 100))
def test_virtualservice_sets_weights_mirror_and_keeps_user_routes(weight: int, mirror: int) -> None:
    vs = istio.with_route(_vs(), S, C, 8080, weight, mirror)
    assert istio.read_route(vs, S, C) == (weight, mirror)
    assert vs["spec"]["http"][0] == _vs()["spec"]["http"][0]
    assert vs["spec"]["http"][1]["timeout"] == "2s"
    assert ("mirror" in vs["spec"]["http"][1]) == (mirror > 0)
    assert istio.with_route(vs, S, C, 8080, weight, mirror) == vs


def test_virtualservice_keeps_a_users_own_mirror() -> None:
    vs = _vs()
    vs["spec"]["http"][1]["mirror"] = {"host": "shadow-logger"}
    out = istio.with_route(vs, S, C, 8080, 20, 0)
    assert out["spec"]["http"][1]["mirror"] == {"host": "shadow-logger"}


def test_virtualservice_header_route() -> None:
    vs = istio.with_header_route(_vs(), S, C, 8080, HeaderRoute("x-arm", "b"))
    assert vs["spec"]["http"][0]["match"] == [{"headers": {"x-arm": {"exact": "b"}}}]
    assert istio.with_header_route(vs, S, C, 8080, None)["spec"]["http"] == _vs()["spec"]["http"]


@pytest.mark.parametrize(("stable", "weight", "expected"), [(4, 0, 1), (4, 20, 1), (4, 50, 4), (4, 75, 12),
                                                              (2, 100, 2), (10, 10, 1)])
def test_replica_ratio(stable: int, weight: int, expected: int) -> None:
    assert candidate_replicas(stable, weight) == expected


@given(stable=st.integers(1, 50), weight=st.integers(1, 99))
def test_replica_ratio_is_the_closest_whole_split(stable: int, weight: int) -> None:
    replicas = candidate_replicas(stable, weight)
    error = abs(effective_weight(stable, replicas) - weight)
    neighbours = [abs(effective_weight(stable, r) - weight) for r in (max(1, replicas - 1), replicas + 1)]
    assert error <= min(neighbours) + 1
    assert replicas >= 1


@pytest.mark.parametrize("build", ["gateway", "istio"])
def test_header_route_applied_again_on_a_route_that_already_has_it(build: str) -> None:
    """Every reconcile of an A/B step rewrites the route that already holds the header rule.

    Regression: the Gateway API builder took the rule index on the route with the header
    rule and used it on the list without it, and crashed on the second application.
    """
    module = gatewayapi if build == "gateway" else istio
    header = HeaderRoute("x-cohort", "b")
    route: dict[str, Any] = _httproute() if build == "gateway" else _vs()
    for _ in range(3):
        route = module.with_route(route, S, C, 8080, 50, 0, None)
        route = module.with_header_route(route, S, C, 8080, header, None)
    once = module.with_header_route(module.with_route(_httproute() if build == "gateway" else _vs(),
                                                      S, C, 8080, 50, 0, None), S, C, 8080, header, None)
    assert route == once, "applying the same route again changes nothing"
    assert module.read_route(route, S, C, None) == (50, 0)
