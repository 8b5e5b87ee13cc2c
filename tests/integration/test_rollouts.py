"""The operator on the sandbox: real Deployments, Services and routes, driven with kubectl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller import api
from tests.integration.rollout_helpers import (
    Rollouts,
    httproute,
    httproute_state,
    kubectl,
    operator_process,
    rollout_body,
    virtualservice,
    virtualservice_state,
    wait_until,
    with_image,
)

pytestmark = pytest.mark.cluster

GATEWAY = {"gatewayAPI": {"httpRoute": "scorer"}}
ACTION = api.ACTION_ANNOTATION


@pytest.fixture
def rollouts(api_client: client.ApiClient, namespace: str, crd_installed: None) -> Rollouts:
    return Rollouts(api_client, namespace)


def _deployed(rollouts: Rollouts, body: dict[str, Any]) -> dict[str, Any]:
    rollouts.create(body)
    return rollouts.wait_status(body["metadata"]["name"], lambda s: s.get("phase") == "Completed",
                                what="first revision deployed")


def _deployments(api_client: client.ApiClient, namespace: str) -> dict[str, int]:
    items = client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items
    return {str(d.metadata.name): int(d.spec.replicas or 0) for d in items if d.metadata and d.spec}


def test_gateway_rollout_walks_steps_promotes_and_keeps_the_old_model_warm(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient
) -> None:
    steps: list[dict[str, Any]] = [
        {"shadow": {"percent": 50, "duration": "3s"}},
        {"canary": {"weight": 20, "duration": "3s"}},
        {"pause": {}},
        {"canary": {"weight": 60, "duration": "1s"}},
    ]
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", steps, GATEWAY)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        first = _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))

        rollouts.wait_status("scorer", lambda s: s.get("mirrorPercent") == 50, what="shadow")
        assert httproute_state(rollouts, "scorer") == (0, 50)
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 20, what="canary 20")
        assert httproute_state(rollouts, "scorer") == (20, 0)
        paused = rollouts.wait_status("scorer", lambda s: s.get("phase") == "Paused", what="pause step")
        assert paused["stepLabel"] == "3/4"
        rollouts.ping("scorer")
        assert rollouts.status("scorer")["phase"] == "Paused", "a pause step waits for a human"

        kubectl(kubeconfig, "-n", namespace, "annotate", "mro", "scorer", f"{ACTION}=promote")
        kubectl(kubeconfig, "-n", namespace, "wait", "--for=condition=Completed", "mro/scorer", "--timeout=60s")
        done = rollouts.status("scorer")
        assert done["stableRevision"] != first["stableRevision"]
        assert done["previousStableRevision"] == first["stableRevision"]
        assert httproute_state(rollouts, "scorer") == (0, 0)
        assert len(_deployments(api_client, namespace)) == 2, "the old model stays loaded"
        route = rollouts.get_object("gateway.networking.k8s.io", "v1", "httproutes", "scorer")
        assert route["spec"]["rules"][0]["name"] == "user-health", "the user's rule is untouched"

        printed = kubectl(kubeconfig, "-n", namespace, "get", "mro", "scorer")
        assert printed.split("\n")[0].split() == ["NAME", "PHASE", "STEP", "WEIGHT", "MIRROR", "VERDICT", "AGE"]
        events = kubectl(kubeconfig, "-n", namespace, "get", "events", "-o",
                         "custom-columns=REASON:.reason", "--no-headers").split()
        for reason in ("Deployed", "RolloutStarted", "StepStarted", "StepCompleted", "Promoted"):
            assert reason in events

        kubectl(kubeconfig, "-n", namespace, "annotate", "mro", "scorer", f"{ACTION}=undo")
        undone = rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", what="undo")
        assert undone["stableRevision"] == first["stableRevision"]
        service = client.CoreV1Api(api_client).read_namespaced_service("scorer-stable", namespace)
        assert service.spec is not None and service.spec.selector is not None
        assert service.spec.selector["rollouts.mlops.dev/revision"] == first["stableRevision"]
        assert httproute_state(rollouts, "scorer") == (0, 0)


def test_abort_puts_all_traffic_back_on_stable_and_retry_restarts(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [
        {"shadow": {"percent": 100, "duration": "2s"}},
        {"canary": {"weight": 40, "duration": "1h"}},
    ]
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", steps, GATEWAY)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 40, what="canary 40")
        kubectl(kubeconfig, "-n", namespace, "annotate", "mro", "scorer", f"{ACTION}=abort")
        kubectl(kubeconfig, "-n", namespace, "wait", "--for=condition=RolledBack", "mro/scorer", "--timeout=30s")
        assert httproute_state(rollouts, "scorer") == (0, 0)
        status = rollouts.status("scorer")
        assert status["phase"] == "RolledBack"
        assert status["lastAction"] == "abort"

        kubectl(kubeconfig, "-n", namespace, "annotate", "mro", "scorer", f"{ACTION}=retry")
        rollouts.wait_status("scorer", lambda s: s.get("mirrorPercent") == 100, what="retried shadow")


def test_istio_virtualservice_mirrors_and_weights_leaving_user_routes(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [
        {"shadow": {"percent": 30, "duration": "2s"}},
        {"canary": {"weight": 10, "duration": "1h"}},
    ]
    rollouts.create_object("networking.istio.io", "v1", "virtualservices", virtualservice("scorer"))
    body = rollout_body("scorer", steps, {"istio": {"virtualService": "scorer"}})
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        wait_until(lambda: virtualservice_state(rollouts, "scorer") == (0, 30), what="istio mirror 30%")
        wait_until(lambda: virtualservice_state(rollouts, "scorer") == (10, 0), what="istio weight 10")
        vs = rollouts.get_object("networking.istio.io", "v1", "virtualservices", "scorer")
        assert vs["spec"]["http"][0]["name"] == "user-static"
        assert "mirror" not in vs["spec"]["http"][1]


def test_replicas_routing_approximates_weight_with_replica_counts(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient
) -> None:
    steps = [{"canary": {"weight": 50, "duration": "1h"}}]
    body = rollout_body("scorer", steps, {"replicas": {}}, gpus=0, replicas=4)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        first = _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2", gpus=0))
        status = rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 50, what="weight 50")
        def both_at_four() -> dict[str, int] | None:
            counts = _deployments(api_client, namespace)
            return counts if sorted(counts.values()) == [4, 4] else None

        counts = wait_until(both_at_four, what="4 stable + 4 candidate replicas")
        assert counts[f"scorer-{first['stableRevision']}"] == 4, "the stable is never scaled down"
        assert status["mirrorPercent"] == 0
        service = client.CoreV1Api(api_client).read_namespaced_service("scorer", namespace)
        assert service.spec is not None
        assert "rollouts.mlops.dev/revision" not in (service.spec.selector or {})


def test_a_candidate_that_cannot_get_gpus_surfaces_the_scheduler_reason(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path
) -> None:
    steps = [{"canary": {"weight": 10, "duration": "1h"}}]
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", steps, GATEWAY, replicas=1)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:huge", gpus=8))
        wait_until(lambda: (c := rollouts.condition("scorer", "CandidateUnschedulable")) and c["status"] == "True",
                 what="CandidateUnschedulable")
        condition = rollouts.condition("scorer", "CandidateUnschedulable")
        assert condition is not None
        assert "Insufficient nvidia.com/gpu" in condition["message"]
        assert httproute_state(rollouts, "scorer") == (0, 0), "no traffic to a candidate that is not ready"
        reasons = kubectl(kubeconfig, "-n", namespace, "get", "events", "-o", "custom-columns=R:.reason",
                          "--no-headers").split()
        assert "CandidateUnschedulable" in reasons


def test_a_missing_route_is_reported_and_traffic_is_not_half_shifted(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path
) -> None:
    body = rollout_body("scorer", [{"canary": {"weight": 10, "duration": "1h"}}],
                        {"gatewayAPI": {"httpRoute": "does-not-exist"}})
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        status = rollouts.wait_status("scorer", lambda s: "RouteError" in s.get("message", ""), what="RouteError")
        assert "does-not-exist not found" in status["message"]
        progressing = rollouts.condition("scorer", "Progressing")
        assert progressing is not None and progressing["reason"] == "RouteError"
        reasons = kubectl(kubeconfig, "-n", namespace, "get", "events", "-o", "custom-columns=R:.reason",
                          "--no-headers").split()
        assert "RouteError" in reasons


def test_ab_header_cohort_is_routed_during_the_step_and_removed_by_abort(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [{"abTest": {"weight": 20, "maxDuration": "1h",
                                               "headerRoute": {"name": "x-arm", "value": "candidate"}}}]
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", steps, GATEWAY)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        wait_until(lambda: httproute_state(rollouts, "scorer") == (20, 0), what="A/B split 20%")
        rules = rollouts.get_object("gateway.networking.k8s.io", "v1", "httproutes", "scorer")["spec"]["rules"]
        cohort = rules[0]
        assert cohort["backendRefs"][0]["name"] == "scorer-candidate"
        assert {"type": "Exact", "name": "x-arm", "value": "candidate"} in cohort["matches"][0]["headers"]
        assert rules[1]["name"] == "user-health"

        kubectl(kubeconfig, "-n", namespace, "annotate", "mro", "scorer", f"{ACTION}=abort")
        wait_until(lambda: httproute_state(rollouts, "scorer") == (0, 0), what="abort")
        rules = rollouts.get_object("gateway.networking.k8s.io", "v1", "httproutes", "scorer")["spec"]["rules"]
        assert [rule.get("name") for rule in rules] == ["user-health", None], "the cohort rule is gone"
