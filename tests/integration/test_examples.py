"""Every example in examples/ applied as a user would (`kubectl apply -f`), with the operator running:
admission takes it, and the first revision is deployed where its template asks (GPU nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.rollout_helpers import Rollouts, kubectl, operator_process

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# example file -> (rollout, GPUs per pod, pod label `model`)
PROFILE_EXAMPLES = {
    "vllm-gateway.yaml": ("chat", 1, "meta-llama-Llama-3.1-8B-Instruct"),
    "triton-istio.yaml": ("resnet", 1, "resnet50"),
    "mlserver-replicas.yaml": ("churn", 0, "churn"),
}


def test_each_profiles_example_is_admitted_and_deployed(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    rollouts = Rollouts(api_client, namespace)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        for example in PROFILE_EXAMPLES:
            kubectl(kubeconfig, "-n", namespace, "apply", "-f", str(EXAMPLES / example))
        for example, (name, gpus, model_label) in PROFILE_EXAMPLES.items():
            status = rollouts.wait_status(name, lambda s: s.get("phase") == "Completed", 120, f"{example} deployed")
            deployment = client.AppsV1Api(api_client).read_namespaced_deployment(
                f"{name}-{status['stableRevision']}", namespace)
            template = deployment.to_dict()["spec"]["template"]
            assert template["metadata"]["labels"]["model"] == model_label
            limits = template["spec"]["containers"][0]["resources"]["limits"] or {}
            assert int(limits.get("nvidia.com/gpu", 0)) == gpus, example
            pods = client.CoreV1Api(api_client).list_namespaced_pod(
                namespace, label_selector=f"rollouts.mlops.dev/rollout={name}").items
            if gpus:
                nodes = [p.spec.node_name or "" for p in pods if p.spec is not None]
                assert nodes and all(node.startswith("gpu-") for node in nodes), example
