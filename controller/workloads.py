"""Deployments and Services of the stable and candidate revisions.

The builders are pure; `Workloads` reads the watch-fed cache and writes only
when the cluster differs from what is wanted, so a steady reconcile costs no API call.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from controller import api
from controller.kube.cache import REVISION_LABEL, ROLLOUT_LABEL, SHARD_LABEL, Cache, DeploymentView
from controller.kube.own_writes import OwnWrites

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


def label_value(text: str) -> str:
    """`text` as a label value: a served model name such as meta-llama/Llama-3.1-8B has a slash,
    which no label value may hold (the metric queries use the name itself, not this label)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._") or "model"


def shard_labels(owner: dict[str, Any]) -> dict[str, str]:
    """The rollout's static shard, if it has one: its Deployments carry it so that the shard's
    watch sees them (not the pods: relabelling a template would restart them)."""
    shard = (owner["metadata"].get("labels") or {}).get(SHARD_LABEL)
    return {SHARD_LABEL: shard} if shard is not None else {}


def deployment_manifest(
    owner: dict[str, Any], spec: api.ModelRolloutSpec, revision: str, replicas: int
) -> dict[str, Any]:
    rollout = owner["metadata"]["name"]
    selector = {ROLLOUT_LABEL: rollout, REVISION_LABEL: revision}
    template = copy.deepcopy(spec.template)
    metadata = template.setdefault("metadata", {})
    # `version` carries the revision so metric queries can tell the two models apart.
    labels = {**metadata.get("labels", {}), **selector, "model": label_value(spec.model), "version": revision}
    metadata["labels"] = labels
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(rollout, revision),
            "labels": {**selector, **MANAGED_BY, **shard_labels(owner)},
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


class OwnershipConflict(RuntimeError):
    """An object with the name we need exists and is not ours: we never take it over."""


class Workloads:
    """Kubernetes I/O for one ModelRollout's Deployments and Services: reads from the cache."""

    def __init__(self, api_client: client.ApiClient, cache: Cache, own_writes: OwnWrites,
                 owner: dict[str, Any], spec: api.ModelRolloutSpec, adopt: bool = True) -> None:
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.cache = cache
        self.own_writes = own_writes
        self.owner = owner
        self.spec = spec
        self.namespace: str = owner["metadata"]["namespace"]
        self.name: str = owner["metadata"]["name"]
        self.uid: str = owner["metadata"].get("uid", "")
        # False while the rollout is being deleted: what it releases must not be owned again.
        self.adopt = adopt

    def _deployment(self, revision: str) -> DeploymentView | None:
        return self.cache.deployment(self.namespace, self.name, revision)

    def _record(self, kind: str, name: str, written: Any) -> None:
        metadata = getattr(written, "metadata", None)
        self.own_writes.record(kind, self.namespace, name, getattr(metadata, "resource_version", None))

    def ensure_revision(self, revision: str, replicas: int) -> None:
        current = self._deployment(revision)
        if current is None:
            body = deployment_manifest(self.owner, self.spec, revision, replicas)
            name = deployment_name(self.name, revision)
            try:
                # The client sends a dict body as is; its stubs only know the model classes.
                created = self.apps.create_namespaced_deployment(self.namespace, body)  # type: ignore[arg-type]
            except client.ApiException as error:
                if error.status != 409:
                    raise
                self._check_existing_deployment(name)
                return  # Ours, and the cache has not seen it yet.
            self._record("Deployment", name, created)
        elif current.replicas != replicas:
            self.scale_revision(revision, replicas)

    def _check_existing_deployment(self, name: str) -> None:
        existing = self.apps.read_namespaced_deployment(name, self.namespace)
        if not self._ours_into_shard(name, existing):
            raise OwnershipConflict(f"Deployment {name} exists and is not managed by this ModelRollout")

    def _ours_into_shard(self, name: str, existing: Any) -> bool:
        """Whether the Deployment read is ours; if so, and it lacks the rollout's shard label (made
        before the rollout had that shard), label it: this shard's watch selects by the label."""
        labels = (existing.metadata.labels or {}) if existing.metadata else {}
        refs = (existing.metadata.owner_references or []) if existing.metadata else []
        if not self.is_ours(labels.get(ROLLOUT_LABEL), {str(ref.uid) for ref in refs}):
            return False
        shard = shard_labels(self.owner)
        if shard and labels.get(SHARD_LABEL) != shard[SHARD_LABEL]:
            patched = self.apps.patch_namespaced_deployment(name, self.namespace, {"metadata": {"labels": shard}})
            self._record("Deployment", name, patched)
        return True

    def _outside_shard(self, revision: str) -> RevisionState | None:
        """A revision this shard's cache lacks may be a Deployment from before the rollout had its
        shard: read it once and label it (the watch then brings it in). None: no such Deployment of ours."""
        if not shard_labels(self.owner):
            return None
        name = deployment_name(self.name, revision)
        try:
            existing = self.apps.read_namespaced_deployment(name, self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        if not self._ours_into_shard(name, existing):
            return None
        return RevisionState(exists=True, replicas=int((existing.spec.replicas if existing.spec else 0) or 0),
                             ready=int((existing.status.ready_replicas if existing.status else 0) or 0))

    def scale_revision(self, revision: str, replicas: int) -> None:
        current = self._deployment(revision)
        if current is None or current.replicas == replicas:
            return
        scaled = self.apps.patch_namespaced_deployment_scale(
            current.name, self.namespace, {"spec": {"replicas": replicas}}
        )
        self._record("Deployment", current.name, scaled)

    def delete_revision(self, revision: str) -> None:
        if self._deployment(revision) is None:
            return
        try:
            self.apps.delete_namespaced_deployment(
                deployment_name(self.name, revision), self.namespace, propagation_policy="Background"
            )
        except client.ApiException as error:
            if error.status != 404:
                raise

    def service_names(self) -> list[str]:
        names = [f"{self.name}-stable", f"{self.name}-candidate"]
        return [*names, self.name] if self.spec.traffic_routing.replicas is not None else names

    def select_services(self, stable: str, candidate: str) -> None:
        wanted: list[tuple[str, str | None]] = [("stable", stable), ("candidate", candidate)]
        if self.spec.traffic_routing.replicas is not None:
            wanted.append(("", None))
        for role, revision in wanted:
            self._apply_service(service_manifest(self.owner, self.spec, role, revision))

    def is_ours(self, rollout_label: str | None, owner_uids: Collection[str]) -> bool:
        """Ours when it carries our rollout label or our owner reference; anything else is never adopted."""
        return rollout_label == self.name or self.uid in owner_uids

    def _apply_service(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        current = self.cache.service(self.namespace, name)
        if current is None:
            try:
                created = self.core.create_namespaced_service(self.namespace, body)  # type: ignore[arg-type]
            except client.ApiException as error:
                if error.status != 409:
                    raise
                return  # Created a moment ago; the cache will show whose it is.
            self._record("Service", name, created)
            return
        if not self.is_ours(current.rollout_label, current.owner_uids):
            raise OwnershipConflict(
                f"Service {name} exists and is not managed by this ModelRollout: rename it, or label it "
                f"{ROLLOUT_LABEL}={self.name} to hand it over")
        patch: dict[str, Any] = {}
        if current.selector != body["spec"]["selector"]:
            patch["spec"] = {"selector": body["spec"]["selector"]}
        if self.adopt and self.uid and self.uid not in current.owner_uids:
            patch["metadata"] = {"ownerReferences": body["metadata"]["ownerReferences"],
                                 "labels": body["metadata"]["labels"]}
        if patch:
            patched = self.core.patch_namespaced_service(name, self.namespace, patch)
            self._record("Service", name, patched)

    def observe(self, revision: str | None) -> RevisionState:
        if revision is None:
            return RevisionState(exists=False)
        deployment = self._deployment(revision)
        if deployment is None:
            return self._outside_shard(revision) or RevisionState(exists=False)
        unschedulable = None
        if deployment.ready < deployment.replicas:
            unschedulable = self.cache.unschedulable_reason(self.namespace, self.name, revision)
        return RevisionState(exists=True, replicas=deployment.replicas, ready=deployment.ready,
                             unschedulable=unschedulable)

    def orphan_revision(self, revision: str) -> None:
        """The Deployment and the Services outlive the rollout: drop our owner reference from each."""
        release = {"metadata": {"ownerReferences": None}}
        try:
            self.apps.patch_namespaced_deployment(deployment_name(self.name, revision), self.namespace, release)
        except client.ApiException as error:
            if error.status != 404:
                raise
        for name in self.service_names():
            view = self.cache.service(self.namespace, name)
            if view is not None and self.is_ours(view.rollout_label, view.owner_uids):
                self.core.patch_namespaced_service(name, self.namespace, release)
