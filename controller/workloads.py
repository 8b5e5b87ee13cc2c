"""Deployments and Services of the stable and candidate revisions.

The builders are pure; `Workloads` does the Kubernetes I/O and writes only
when the cluster differs from what is wanted, so a steady reconcile costs reads.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from controller import api

ROLLOUT_LABEL = f"{api.GROUP}/rollout"
REVISION_LABEL = f"{api.GROUP}/revision"
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelrollout"}


def revision_of(template: dict[str, Any]) -> str:
    """A short, stable hash of the pod template: equal templates share a revision."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def deployment_name(rollout: str, revision: str) -> str:
    return f"{rollout}-{revision}"


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": api.KIND,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def deployment_manifest(
    owner: dict[str, Any], spec: api.ModelRolloutSpec, revision: str, replicas: int
) -> dict[str, Any]:
    rollout = owner["metadata"]["name"]
    selector = {ROLLOUT_LABEL: rollout, REVISION_LABEL: revision}
    template = copy.deepcopy(spec.template)
    metadata = template.setdefault("metadata", {})
    # `version` carries the revision so metric queries can tell the two models apart.
    metadata["labels"] = {**metadata.get("labels", {}), **selector, "model": spec.model, "version": revision}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(rollout, revision),
            "labels": {**selector, **MANAGED_BY},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
    }


def service_manifest(
    owner: dict[str, Any], spec: api.ModelRolloutSpec, role: str, revision: str | None
) -> dict[str, Any]:
    """`<name>-stable` / `<name>-candidate` select one revision; `<name>` (replicas mode) selects all."""
    rollout = owner["metadata"]["name"]
    selector = {ROLLOUT_LABEL: rollout}
    if revision is not None:
        selector[REVISION_LABEL] = revision
    port = {"name": "http", "port": spec.service.port, "targetPort": spec.service.target_port or spec.service.port}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{rollout}-{role}" if role else rollout,
            "labels": {ROLLOUT_LABEL: rollout, **MANAGED_BY},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {"selector": selector, "ports": [port]},
    }


@dataclass(frozen=True)
class RevisionState:
    exists: bool
    replicas: int = 0
    ready: int = 0
    unschedulable: str | None = None

    @property
    def fully_ready(self) -> bool:
        return self.exists and self.replicas > 0 and self.ready >= self.replicas


class Workloads:
    """Kubernetes I/O for one ModelRollout's Deployments and Services."""

    def __init__(self, api_client: client.ApiClient, owner: dict[str, Any], spec: api.ModelRolloutSpec) -> None:
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.owner = owner
        self.spec = spec
        self.namespace: str = owner["metadata"]["namespace"]
        self.name: str = owner["metadata"]["name"]
        self.writes = 0

    def _read_deployment(self, revision: str) -> Any | None:
        try:
            return self.apps.read_namespaced_deployment(deployment_name(self.name, revision), self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def ensure_revision(self, revision: str, replicas: int) -> None:
        current = self._read_deployment(revision)
        if current is None:
            body = deployment_manifest(self.owner, self.spec, revision, replicas)
            # The client sends a dict body as is; its stubs only know the model classes.
            self.apps.create_namespaced_deployment(self.namespace, body)  # type: ignore[arg-type]
            self.writes += 1
        elif current.spec.replicas != replicas:
            self.scale_revision(revision, replicas)

    def scale_revision(self, revision: str, replicas: int) -> None:
        current = self._read_deployment(revision)
        if current is None or current.spec.replicas == replicas:
            return
        self.apps.patch_namespaced_deployment_scale(
            deployment_name(self.name, revision), self.namespace, {"spec": {"replicas": replicas}}
        )
        self.writes += 1

    def delete_revision(self, revision: str) -> None:
        try:
            self.apps.delete_namespaced_deployment(
                deployment_name(self.name, revision), self.namespace, propagation_policy="Background"
            )
            self.writes += 1
        except client.ApiException as error:
            if error.status != 404:
                raise

    def select_services(self, stable: str, candidate: str) -> None:
        wanted = [("stable", stable), ("candidate", candidate)]
        if self.spec.traffic_routing.replicas is not None:
            wanted.append(("", None))  # type: ignore[arg-type]
        for role, revision in wanted:
            self._apply_service(service_manifest(self.owner, self.spec, role, revision))

    def _apply_service(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        try:
            current = self.core.read_namespaced_service(name, self.namespace)
        except client.ApiException as error:
            if error.status != 404:
                raise
            self.core.create_namespaced_service(self.namespace, body)  # type: ignore[arg-type]
            self.writes += 1
            return
        if current.spec is None or current.spec.selector != body["spec"]["selector"]:
            self.core.patch_namespaced_service(name, self.namespace, {"spec": {"selector": body["spec"]["selector"]}})
            self.writes += 1

    def observe(self, revision: str | None) -> RevisionState:
        if revision is None:
            return RevisionState(exists=False)
        deployment = self._read_deployment(revision)
        if deployment is None:
            return RevisionState(exists=False)
        replicas = deployment.spec.replicas or 0
        ready = (deployment.status.ready_replicas or 0) if deployment.status else 0
        unschedulable = None
        if ready < replicas:
            unschedulable = self._unschedulable_reason(revision)
        return RevisionState(exists=True, replicas=replicas, ready=ready, unschedulable=unschedulable)

    def _unschedulable_reason(self, revision: str) -> str | None:
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{ROLLOUT_LABEL}={self.name},{REVISION_LABEL}={revision}"
        ).items
        for pod in pods:
            for condition in (pod.status.conditions or []) if pod.status else []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return str(condition.message)
        return None
