"""`kubectl apply -k manifests/` works, and its RBAC is enough: a rollout runs under that ServiceAccount."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.rollout_helpers import (
    Rollouts,
    httproute,
    httproute_state,
    kubectl,
    operator_process,
    rollout_body,
    wait_for,
    with_image,
)

pytestmark = pytest.mark.cluster
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def _token_kubeconfig(admin: Path, token: str, target: Path) -> Path:
    config: dict[str, Any] = yaml.safe_load(admin.read_text())
    cluster = config["clusters"][0]
    target.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "modelrollout", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "modelrollout"}}],
        "current-context": "sa",
    }))
    return target


def test_kustomize_applies_and_the_service_account_can_run_a_rollout(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    applied = kubectl(kubeconfig, "apply", "-k", str(MANIFESTS))
    for kind in ("customresourcedefinition", "serviceaccount/modelrollout", "clusterrole", "deployment"):
        assert kind in applied
    token = kubectl(kubeconfig, "-n", "modelrollout-system", "create", "token", "modelrollout").strip()
    restricted = _token_kubeconfig(kubeconfig, token, tmp_path / "sa-kubeconfig")
    denied = kubectl(restricted, "auth", "can-i", "delete", "httproutes", "-n", namespace, check=False)
    assert denied.strip() == "no", "the operator never deletes a user's route"

    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    steps: list[dict[str, Any]] = [{"shadow": {"percent": 20, "duration": "1s"}},
                                   {"canary": {"weight": 40, "duration": "1s"}}]
    body = rollout_body("scorer", steps, {"gatewayAPI": {"httpRoute": "scorer"}})
    # As in the Deployment: the Leases live in the operator's namespace, where its Role allows them.
    with operator_process(restricted, namespace, tmp_path / "operator.log",
                          env={"POD_NAMESPACE": "modelrollout-system", "POD_NAME": "modelrollout-test"}):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="deployed as the SA")
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        rollouts.wait_status(
            "scorer", lambda s: s.get("phase") == "Completed" and bool(s.get("previousStableRevision")),
            what="promoted as the SA",
        )
    assert httproute_state(rollouts, "scorer") == (0, 0)
    log = (tmp_path / "operator.log").read_text()
    assert "Forbidden" not in log and " 403" not in log, log[-2000:]
    wait_for(lambda: "Promoted" in kubectl(kubeconfig, "-n", namespace, "get", "events"), what="events")
