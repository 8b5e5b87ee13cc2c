"""`kubectl apply -k manifests/` works, and its RBAC is enough: a rollout runs under that ServiceAccount."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from devkit.sandbox.cluster import Sandbox
from kubernetes import client

from tests.integration.rbac_audit import calls, granted, scenarios
from tests.integration.rollout_helpers import kubectl, operator_process

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


def test_kustomize_applies_and_the_service_account_calls_exactly_what_it_is_granted(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
    sandbox_instance: Sandbox,
) -> None:
    try:
        applied = kubectl(kubeconfig, "apply", "-k", str(MANIFESTS))
        for kind in ("customresourcedefinition", "serviceaccount/modelrollout", "clusterrole", "deployment"):
            assert kind in applied
        system = json.loads(kubectl(kubeconfig, "get", "namespace", "modelrollout-system", "-o", "json"))
        assert system["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        token = kubectl(kubeconfig, "-n", "modelrollout-system", "create", "token", "modelrollout").strip()
        restricted = _token_kubeconfig(kubeconfig, token, tmp_path / "sa-kubeconfig")
        denied = kubectl(restricted, "auth", "can-i", "delete", "httproutes", "-n", namespace, check=False)
        assert denied.strip() == "no", "the operator never deletes a user's route"

        # Cluster-wide, as the manifests install it; the Leases in the operator's namespace, as in its pod.
        with operator_process(restricted, None, tmp_path / "operator.log", "--shards", "2",
                              env={"POD_NAMESPACE": "modelrollout-system", "POD_NAME": "modelrollout-test",
                                   "MODELROLLOUT_COMPARATOR_IMAGE": "modelrollout:0.1.0"}):
            scenarios(api_client, namespace)
    finally:
        # The CRD stays (the session's tests share it); the rest goes, so the chart can be installed.
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", str(MANIFESTS / "modelrollout.yaml"),
                "-f", str(MANIFESTS / "namespace.yaml"))
    log = (tmp_path / "operator.log").read_text()
    assert "Traceback" not in log, log[-2000:]
    used, refused = calls(sandbox_instance.audit_log, "system:serviceaccount:modelrollout-system:modelrollout")
    # The default install reads no Secret anywhere (rbac.namespaces is empty): the one read the scenarios
    # ask for is refused by RBAC, and the rollout says so in its condition.
    assert set(refused) == {"get /secrets"}, f"calls the manifests' RBAC does not grant: {sorted(set(refused))}"
    objects = [doc for doc in yaml.safe_load_all((MANIFESTS / "modelrollout.yaml").read_text()) if doc]
    unused = granted(objects) - used
    assert not unused, f"granted but never called: {sorted(unused)}"
