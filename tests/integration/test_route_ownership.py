"""Nobody takes what is not theirs, on the sandbox and for both routers: a rollout naming another
team's rule writes nothing, an owner's take-back pauses the rollout and is never undone, and
deletion gives the rule back as it was before the rollout managed it, minus our backends."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.rollout_helpers import (
    Rollouts,
    kubectl,
    operator_process,
    rollout_body,
    wait_until,
    with_image,
)

pytestmark = pytest.mark.cluster

HANDED_TO = "rollouts.mlops.dev/handed-to"


@dataclass(frozen=True)
class Kind:
    """One route kind, written out here (not taken from the operator: a check shares no code with it)."""

    group: str
    plural: str
    rules: str
    refs: str
    routing: str
    section: str

    def route(self, name: str, backend: str, **annotations: str) -> dict[str, Any]:
        if self.plural == "httproutes":
            rules: list[dict[str, Any]] = [
                {"name": "team-b", "matches": [{"path": {"type": "PathPrefix", "value": "/b"}}],
                 "backendRefs": [{"name": "team-b-model", "port": 80}]},
                {"name": "main", "backendRefs": [{"name": backend, "port": 8080}]},
            ]
            spec: dict[str, Any] = {"parentRefs": [{"name": "gateway"}], "rules": rules}
            kind = "HTTPRoute"
        else:
            spec = {"hosts": [name], "http": [
                {"name": "team-b", "match": [{"uri": {"prefix": "/b"}}],
                 "route": [{"destination": {"host": "team-b-model"}}]},
                {"name": "main", "route": [{"destination": {"host": backend}}]},
            ]}
            kind = "VirtualService"
        return {"apiVersion": f"{self.group}/v1", "kind": kind,
                "metadata": {"name": name, "annotations": annotations}, "spec": spec}

    def backends(self, rule: dict[str, Any]) -> list[str]:
        if self.plural == "httproutes":
            return [ref["name"] for ref in rule.get(self.refs, [])]
        return [str(d["destination"]["host"]) for d in rule.get(self.refs, [])]

    def routing_spec(self, route: str, section: str | None = None) -> dict[str, Any]:
        key = "httpRoute" if self.plural == "httproutes" else "virtualService"
        return {self.routing: {key: route, **({self.section: section} if section else {})}}


GATEWAY = Kind("gateway.networking.k8s.io", "httproutes", "rules", "backendRefs", "gatewayAPI", "ruleName")
ISTIO = Kind("networking.istio.io", "virtualservices", "http", "route", "istio", "routeName")
KINDS = [pytest.param(GATEWAY, id="gateway"), pytest.param(ISTIO, id="istio")]
STEPS: list[dict[str, Any]] = [{"canary": {"weight": 30, "duration": "1h"}}]


@pytest.fixture
def rollouts(api_client: client.ApiClient, namespace: str, crd_installed: None) -> Rollouts:
    return Rollouts(api_client, namespace)


def _get(rollouts: Rollouts, kind: Kind, name: str) -> dict[str, Any]:
    return rollouts.get_object(kind.group, "v1", kind.plural, name)


def _rule(rollouts: Rollouts, kind: Kind, name: str, rule: str) -> dict[str, Any]:
    return next(r for r in _get(rollouts, kind, name)["spec"][kind.rules] if r.get("name") == rule)


def _replace_rule(rollouts: Rollouts, kind: Kind, name: str, rule: str, refs: list[dict[str, Any]]) -> None:
    route = _get(rollouts, kind, name)
    for each in route["spec"][kind.rules]:
        if each.get("name") == rule:
            each[kind.refs] = refs
    rollouts.custom.replace_namespaced_custom_object(kind.group, "v1", rollouts.namespace, kind.plural, name, route)


def _reasons(kubeconfig: Path, namespace: str) -> list[str]:
    return kubectl(kubeconfig, "-n", namespace, "get", "events", "-o", "custom-columns=R:.reason",
                   "--no-headers").split()


def _services(api_client: client.ApiClient, namespace: str) -> set[str]:
    return {str(s.metadata.name) for s in client.CoreV1Api(api_client).list_namespaced_service(namespace).items
            if s.metadata}


@pytest.mark.parametrize("kind", KINDS)
def test_another_teams_rule_is_refused_and_never_written(
    kind: Kind, rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient
) -> None:
    rollouts.create_object(kind.group, "v1", kind.plural, kind.route("team-b", "team-b-main"))
    before = _get(rollouts, kind, "team-b")
    body = rollout_body("attacker", STEPS, kind.routing_spec("team-b", "team-b"))
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        refused = rollouts.wait_status("attacker", lambda s: any(
            c["type"] == "RouteManaged" and c["reason"] == "RouteNotOurs" for c in s.get("conditions", [])),
            what="refused")
        assert "team-b" in refused["message"] and "attacker-stable" in refused["message"]
        rollouts.ping("attacker")  # the operator is alive and has reconciled since
        assert _get(rollouts, kind, "team-b")["metadata"]["resourceVersion"] == \
            before["metadata"]["resourceVersion"], "not one write to the other team's route"
        assert client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items == [], "nothing deployed"
        assert "RouteNotOurs" in _reasons(kubeconfig, namespace)
        rollouts.delete("attacker")
        wait_until(lambda: "attacker" not in rollouts.names(), what="deleted")
        assert _get(rollouts, kind, "team-b")["spec"] == before["spec"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_owners_take_back_pauses_the_rollout_and_deletion_gives_the_rule_back(
    kind: Kind, rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient
) -> None:
    rollouts.create_object(kind.group, "v1", kind.plural, kind.route("scorer", "scorer-stable"))
    original = copy.deepcopy(_rule(rollouts, kind, "scorer", "main"))
    body = rollout_body("scorer", STEPS, kind.routing_spec("scorer"))
    body["spec"]["deletionPolicy"] = "Delete"
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="deployed")
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 30 and s.get("phase") == "Progressing",
                             what="canary 30")
        wait_until(lambda: "scorer-candidate" in kind.backends(_rule(rollouts, kind, "scorer", "main")),
                 what="the candidate in the rule")

        # The owner takes the rule back: our Services out, theirs in.
        theirs = ([{"name": "team-a-v7", "port": 8080}] if kind is GATEWAY
                  else [{"destination": {"host": "team-a-v7"}}])
        _replace_rule(rollouts, kind, "scorer", "main", theirs)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Paused" and any(
            c["type"] == "RouteManaged" and c["reason"] == "RouteTakenBack" for c in s.get("conditions", [])),
            what="paused on the take-back")
        rollouts.ping("scorer")
        assert kind.backends(_rule(rollouts, kind, "scorer", "main")) == ["team-a-v7"], "the take-back stands"

        # Handed back: the stable in the rule again, and the canary goes on.
        _replace_rule(rollouts, kind, "scorer", "main", original[kind.refs])
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Progressing" and any(
            c["type"] == "RouteManaged" and c["reason"] == "HandedBack" for c in s.get("conditions", [])),
            what="resumed on the hand-back")
        wait_until(lambda: "scorer-candidate" in kind.backends(_rule(rollouts, kind, "scorer", "main")),
                 what="the candidate back in the rule")

        rollouts.delete("scorer")
        wait_until(lambda: "scorer" not in rollouts.names(), what="deleted")
        route = _get(rollouts, kind, "scorer")
        assert _rule(rollouts, kind, "scorer", "main") == original, "the rule as it was before the rollout"
        assert "rollouts.mlops.dev/managed-rules" not in (route["metadata"].get("annotations") or {})
        assert [r.get("name") for r in route["spec"][kind.rules]] == ["team-b", "main"]
        # The rule still names scorer-stable: with Delete, the Services it needs are kept, and an Event says why.
        assert {"scorer-stable", "scorer-candidate"} <= _services(api_client, namespace)
        assert "ServicesKept" in _reasons(kubeconfig, namespace)


def test_a_handed_rule_is_given_back_to_its_own_backends_and_delete_removes_the_services(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient
) -> None:
    kind = GATEWAY
    rollouts.create_object(kind.group, "v1", kind.plural, kind.route("shared", "model-v1", **{HANDED_TO: "scorer"}))
    original = copy.deepcopy(_rule(rollouts, kind, "shared", "main"))
    body = rollout_body("scorer", STEPS, kind.routing_spec("shared", "main"))
    body["spec"]["deletionPolicy"] = "Delete"
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="deployed")
        assert kind.backends(_rule(rollouts, kind, "shared", "main")) == ["scorer-stable", "scorer-candidate"], \
            "the handed rule is the rollout's whole while it manages it"
        rollouts.delete("scorer")
        wait_until(lambda: "scorer" not in rollouts.names(), what="deleted")
        assert _rule(rollouts, kind, "shared", "main") == original
        wait_until(lambda: not {"scorer-stable", "scorer-candidate"} & _services(api_client, namespace),
                 what="the Services removed once nothing routes to them")
