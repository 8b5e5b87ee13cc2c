"""The test kit's route translator, read against the Gateway API and Istio specs (no nginx needed)."""

from __future__ import annotations

import re
from pathlib import Path

from e2e.gateway import Backend, Rule, httproute_rules, render, virtualservice_rules

ENDPOINTS = {("stable", 8080): ["10.64.0.5:8080", "10.64.0.6:8080"], ("candidate", 8080): ["10.65.0.2:8080"]}


def _map_entries(conf: str) -> list[tuple[str, str]]:
    block = conf.split("$rule {", 1)[1].split("}", 1)[0]
    return re.findall(r'"(~\^.*?)" (r\d+);', block)


def _rule_of(conf: str, uri: str, **headers: str) -> str | None:
    """Which rule nginx's map picks for a request: the first regex that matches, as nginx does."""
    key_columns = conf.split("map \"", 1)[1].split('"', 1)[0].split("|")
    values = [uri, *(headers.get(column.removeprefix("$http_"), "") for column in key_columns[1:])]
    key = "|".join(values)
    for pattern, rule in _map_entries(conf):
        if re.match(pattern[1:].replace("\\\\", "\\"), key):
            return rule
    return None


def test_httproute_rules_follow_the_specs_precedence() -> None:
    route = {"spec": {"rules": [
        {"backendRefs": [{"name": "stable", "port": 8080, "weight": 90}, {"name": "candidate", "port": 8080,
                                                                           "weight": 10}]},
        {"matches": [{"headers": [{"name": "X-Cohort", "value": "b"}]}],
         "backendRefs": [{"name": "candidate", "port": 8080}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}], "backendRefs": [{"name": "stable",
                                                                                             "port": 8080}]},
        {"matches": [{"path": {"type": "Exact", "value": "/admin/x"}}], "backendRefs": []},
    ]}}
    conf = render(httproute_rules(route), ENDPOINTS, "127.0.0.1:1", Path("/tmp/x"))
    ranked = {rule: index for index, (_, rule) in enumerate(_map_entries(conf))}
    assert _rule_of(conf, "/admin/x") == "r0", "an exact path first"
    assert _rule_of(conf, "/admin/y") == "r1", "then the longest prefix"
    assert _rule_of(conf, "/administrator") != "r1", "a prefix matches whole path elements"
    assert _rule_of(conf, "/predict", x_cohort="b") == "r2", "then the most header matches"
    assert _rule_of(conf, "/predict", x_cohort="a") == "r3"
    assert len(ranked) == 4
    assert "90.00% stable__8080;" in conf and "* candidate__8080;" in conf
    assert "server 10.64.0.5:8080;" in conf and "server 10.65.0.2:8080;" in conf


def test_a_mirror_filter_with_a_fraction_and_zero_weights() -> None:
    route = {"spec": {"rules": [{
        "backendRefs": [{"name": "stable", "port": 8080, "weight": 0}, {"name": "candidate", "port": 8080,
                                                                          "weight": 0}],
        "filters": [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "candidate", "port": 8080}, "fraction": {"numerator": 1, "denominator": 4}}}],
    }]}}
    rules = httproute_rules(route)
    assert rules[0].mirror == Backend("candidate", 8080) and rules[0].mirror_percent == 25.0
    conf = render(rules, ENDPOINTS, "127.0.0.1:1", Path("/tmp/x"))
    assert "r0 $r0_backend" not in conf, "every weight 0: no backend, nginx answers 500"
    assert "25.00% candidate__8080;" in conf


def test_virtualservice_routes_match_in_order() -> None:
    service = {"spec": {"http": [
        {"match": [{"headers": {"x-cohort": {"exact": "b"}}}],
         "route": [{"destination": {"host": "candidate", "port": {"number": 8080}}}]},
        {"route": [{"destination": {"host": "stable.ns.svc.cluster.local", "port": {"number": 8080}}, "weight": 80},
                   {"destination": {"host": "candidate", "port": {"number": 8080}}, "weight": 20}],
         "mirror": {"host": "candidate", "port": {"number": 8080}}, "mirrorPercentage": {"value": 5.0}},
    ]}}
    rules = virtualservice_rules(service)
    assert rules[1].backends == (Backend("stable", 8080, 80), Backend("candidate", 8080, 20))
    conf = render(rules, ENDPOINTS, "127.0.0.1:1", Path("/tmp/x"), first_match=True)
    assert _rule_of(conf, "/predict", x_cohort="b") == "r0" and _rule_of(conf, "/predict") == "r1"
    assert "5.00% candidate__8080;" in conf


def test_a_backend_without_endpoints_is_never_tried() -> None:
    conf = render([Rule(backends=(Backend("gone", 80),))], {}, "127.0.0.1:1", Path("/tmp/x"))
    assert "upstream gone__80 {\n    server 127.0.0.1:9 down;" in conf
