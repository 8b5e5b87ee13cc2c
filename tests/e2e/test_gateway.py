"""What Envoy Gateway says and does, as the operator sees it: a route its gateway refuses pauses the
canary until it is accepted again; the gateway down mid-step holds the analysis with a reason (its
profile reports no data) and never promotes, and its return resumes the step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e.harness import wait_until
from e2e.world import World, e2e_world
from kubernetes import client


def parse_timestamp(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def set_parent(world: World, parent: dict[str, Any]) -> None:
    world.rollouts.custom.patch_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", world.rollouts.namespace, "httproutes", "scorer",
        {"spec": {"parentRefs": [parent]}})


def at_first_step(status: dict[str, Any]) -> bool:
    return status.get("phase") == "Progressing" and status.get("canaryWeight") == 20 \
        and status.get("stepStartedAt") is not None


def promoted_from(first: dict[str, Any]) -> Any:
    return lambda s: s.get("phase") == "Completed" and s.get("stableRevision") != first["stableRevision"]


def test_a_route_envoy_gateway_refuses_pauses_the_canary_until_it_is_accepted(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=30) as world:
        first = world.deploy([{"canary": {"weight": 20, "duration": "45s"}}], guardrails=[])
        accepted = condition(world.status(), "RouteAccepted")
        assert (accepted.get("status"), accepted.get("reason")) == ("True", "Accepted"), accepted
        world.roll_out("good-rebuild")
        world.rollouts.wait_status("scorer", at_first_step, 300, "the canary's first step")

        set_parent(world, {"name": "gateway", "sectionName": "no-such-listener"})
        paused = world.rollouts.wait_status(
            "scorer", lambda s: s.get("pauseReason") == "gateway", 120, "paused for the refused route")
        refused = condition(paused, "RouteAccepted")
        assert (refused["status"], refused["reason"]) == ("False", "RouteNotAccepted"), refused
        assert "no-such-listener" in refused["message"], "Envoy Gateway's own words, naming the parent"
        assert condition(paused, "Paused")["reason"] == "RouteNotAccepted"
        assert paused["canaryWeight"] == 20, "the step's route stays written"

        set_parent(world, {"name": "gateway"})
        resumed = world.rollouts.wait_status(
            "scorer", lambda s: s.get("pauseReason") is None and condition(s, "RouteAccepted").get("status") == "True",
            120, "resumed once accepted")
        assert parse_timestamp(resumed["stepStartedAt"]) > parse_timestamp(paused["stepStartedAt"]), \
            "the step started over"
        world.rollouts.wait_status("scorer", promoted_from(first), 300, "promoted")


def test_the_gateway_down_mid_step_holds_the_analysis_and_never_promotes(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=30) as world:
        first = world.deploy([{"canary": {"weight": 20, "duration": "30s"}}], gatewayProfile="envoy", guardrails=[
            {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.05, "failureLimit": 1}])
        world.roll_out("good-rebuild")
        world.rollouts.wait_status("scorer", at_first_step, 300, "the canary's first step")

        with world.gateway.outage():
            held = world.rollouts.wait_status(
                "scorer", lambda s: s.get("pauseReason") == "analysis", 120, "the analysis held")
            assert held["phase"] == "Paused"
            assert "envoy" in held["message"].lower(), held["message"]
            # Past the step's own end, the rollout is still held, on the same step.
            ends = parse_timestamp(held["stepEndsAt"])
            wait_until(lambda: datetime.now(UTC) > ends, 120, "the step's end passed")
            still = world.status()
            assert (still["phase"], still["stableRevision"], still["currentStep"]) == \
                ("Paused", first["stableRevision"], 0), still.get("message")

        world.rollouts.wait_status("scorer", lambda s: s.get("pauseReason") is None, 180,
                                   "measurements back after the gateway")
        done = world.rollouts.wait_status("scorer", promoted_from(first), 300, "promoted")
        assert not [d for d in done.get("decisions", []) if d["verdict"].startswith("breach")], done["decisions"]
