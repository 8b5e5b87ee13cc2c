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
from urllib.parse import urlsplit

from kubernetes import client

from controller import api
from controller.comparator import FEEDBACK_TOKEN_ENV, JUDGE_TOKEN_ENV, STORE_DIR
from controller.durations import parse_duration
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


# The comparator's Deployment is filed under this revision prefix and the hash of its arguments, so
# that the cache shows whether the one running is this step's.
COMPARATOR_REVISION = "compare-"
COMPONENT_LABEL = f"{api.GROUP}/component"
COMPARATOR_BINARY = "/opt/modelrollout/bin/modelrollout"  # in the operator's own image (Containerfile)
COMPARATOR_PORT, COMPARATOR_ADMIN_PORT = 8080, 9090


def comparator_name(rollout: str) -> str:
    return f"{rollout}-compare"


def comparator_args(owner: dict[str, Any], spec: api.ModelRolloutSpec, compare: api.Compare) -> list[str]:
    """`modelrollout compare` for this rollout: both models behind their Services, this step's rules."""
    rollout, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    port = spec.service.port
    args = ["compare", "--stable", f"http://{rollout}-stable.{namespace}.svc:{port}",
            "--candidate", f"http://{rollout}-candidate.{namespace}.svc:{port}", "--format", compare.format,
            "--absolute", repr(compare.absolute_tolerance), "--relative", repr(compare.relative_tolerance),
            "--noise-percent", str(compare.noise_percent),
            "--max-requests-per-second", repr(float(compare.max_requests_per_second)),
            "--timeout", repr(parse_duration(compare.timeout)), "--max-body-bytes", str(compare.max_body_bytes),
            "--samples", str(compare.samples), "--rollout", f"{namespace}/{rollout}", "--port", str(COMPARATOR_PORT),
            "--admin-port", str(COMPARATOR_ADMIN_PORT)]
    args += [part for path in compare.paths or [] for part in ("--path", path)]
    args += [part for path in compare.ignore or [] for part in ("--ignore", path)]
    args += [part for path in compare.redact or [] for part in ("--redact", path)]
    if compare.argmax:
        args.append("--argmax")
    if compare.min_similarity is not None:
        args += ["--min-similarity", repr(compare.min_similarity)]
    if compare.paired_latency is not None:
        args += ["--slower-than", repr(compare.paired_latency.relative_to_stable)]
    if compare.allow_side_effects:
        args.append("--allow-side-effects")
    return args + _feedback_args(compare) + _judge_args(compare.judge)


def _feedback_args(compare: api.Compare) -> list[str]:
    if compare.feedback is None or (compare.request_key is None and compare.request_key_path is None):
        return []
    found = compare.feedback
    args = ["--feedback-retention", repr(parse_duration(found.retention)),
            "--feedback-max-entries", str(found.max_entries),
            "--feedback-max-per-second", repr(float(found.max_per_second)),
            "--feedback-db", f"{STORE_DIR}/feedback.sqlite"]
    if compare.request_key is not None:
        args += ["--key-header", compare.request_key]
    else:
        args += ["--key-path", str(compare.request_key_path)]
    labels = compare.labels
    if labels is not None:
        # maxDrop and onBreach are the operator's, which judges the counts.
        args += ["--labels-task", labels.task]
        if labels.prediction is not None:
            args += ["--labels-prediction", labels.prediction]
        if labels.k is not None:
            args += ["--labels-k", str(labels.k)]
        if labels.tolerance is not None:
            args += ["--labels-tolerance", repr(labels.tolerance)]
        if labels.window is not None:
            args += ["--labels-window", repr(parse_duration(labels.window))]
        if labels.max_error is not None:
            args += ["--labels-max-error", repr(labels.max_error)]
    if compare.judge is not None and compare.judge.calibration:
        args.append("--judge-calibration")
    return args


def _judge_args(judge: api.JudgeTest | None) -> list[str]:
    if judge is None:
        return []
    # margin and onBreach are the operator's, which judges the counts.
    args = ["--judge-url", judge.url, "--judge-model", judge.model,
            "--judge-max-per-second", repr(float(judge.max_requests_per_second)),
            "--judge-budget", str(judge.budget), "--judge-swap-percent", str(judge.swap_percent),
            "--judge-timeout", repr(parse_duration(judge.timeout))]
    return args + (["--judge-prompt", judge.prompt] if judge.prompt is not None else [])


def comparator_manifests(owner: dict[str, Any], spec: api.ModelRolloutSpec, compare: api.Compare,
                         image: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The comparator's Deployment and Service, owned by the rollout. The Service takes the mirror on
    the rollout's own port, and serves /metrics and /samples on `admin`."""
    rollout = owner["metadata"]["name"]
    args = comparator_args(owner, spec, compare)
    revision = COMPARATOR_REVISION + hashlib.sha256(json.dumps([image, args]).encode()).hexdigest()[:10]
    selector = {ROLLOUT_LABEL: rollout, COMPONENT_LABEL: "comparator"}
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}
    container = {
        "name": "comparator", "image": image, "command": [COMPARATOR_BINARY], "args": args,
        "ports": [{"name": "http", "containerPort": COMPARATOR_PORT},
                  {"name": "admin", "containerPort": COMPARATOR_ADMIN_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": restricted,
    }
    volumes, env = [], []
    if compare.feedback is not None:
        # The store survives the container's restarts (an emptyDir lives as long as the pod).
        env.append({"name": FEEDBACK_TOKEN_ENV, "valueFrom": {"secretKeyRef": {
            "name": compare.feedback.token_secret_ref.name, "key": "token"}}})
        container["volumeMounts"] = [{"name": "store", "mountPath": STORE_DIR}]
        volumes = [{"name": "store", "emptyDir": {}}]
    if compare.judge is not None and compare.judge.secret_ref is not None:
        env.append({"name": JUDGE_TOKEN_ENV, "valueFrom": {"secretKeyRef": {
            "name": compare.judge.secret_ref.name, "key": "token"}}})
    if env:
        container["env"] = env
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": comparator_name(rollout),
                     "labels": {**selector, REVISION_LABEL: revision, **MANAGED_BY, **shard_labels(owner)},
                     "ownerReferences": [owner_reference(owner)]},
        "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": {
            "metadata": {"labels": {**selector, "model": label_value(spec.model)}},
            "spec": {"containers": [container], "automountServiceAccountToken": False, "securityContext": {
                "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                **({"volumes": volumes} if volumes else {})}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": comparator_name(rollout), "labels": {ROLLOUT_LABEL: rollout, **MANAGED_BY},
                     "ownerReferences": [owner_reference(owner)]},
        "spec": {"selector": selector, "ports": [
            {"name": "http", "port": spec.service.port, "targetPort": COMPARATOR_PORT},
            {"name": "admin", "port": COMPARATOR_ADMIN_PORT, "targetPort": COMPARATOR_ADMIN_PORT}]},
    }
    return deployment, service


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


class ComparatorUnavailable(RuntimeError):
    """A shadow step compares, and the operator was not told which image its comparator runs from, or
    the judge's Secret does not allow its token to go to the judge."""


def _address(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url.strip())
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default, parts.path.rstrip("/")


def check_judge_secret(url: str, annotations: dict[str, str], where: str) -> None:
    """The judge's Secret says where its token may go, as analysis.prometheus.secretRef's does: anyone who
    may create a ModelRollout may name any Secret of their namespace and any URL, and the operator's
    comparator would send it there. Raises ComparatorUnavailable unless its annotation lists `url`
    (and plain http is allowed by rollouts.mlops.dev/allow-plain-http: "true")."""
    allowed = annotations.get(api.JUDGE_ADDRESSES_ANNOTATION, "").replace(",", " ").split()
    if _address(url) not in {_address(entry) for entry in allowed}:
        raise ComparatorUnavailable(
            f"Secret {where} (compare.judge.secretRef) does not allow its token to be sent to {url}: its annotation "
            f"{api.JUDGE_ADDRESSES_ANNOTATION} lists {', '.join(allowed) or 'none'}")
    if urlsplit(url).scheme.lower() == "http" and annotations.get(api.ALLOW_PLAIN_HTTP_ANNOTATION, "") != "true":
        raise ComparatorUnavailable(
            f"Secret {where} would send its token in plain text to {url}: use https, or annotate the Secret "
            f'{api.ALLOW_PLAIN_HTTP_ANNOTATION}: "true"')


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

    def ensure_comparator(self, compare: api.Compare, image: str) -> None:
        """This step's comparator runs: created, or replaced when the one running has other arguments."""
        deployment, service = comparator_manifests(self.owner, self.spec, compare, image)
        self._apply_service(service)
        revision = deployment["metadata"]["labels"][REVISION_LABEL]
        running = [view for view in self.cache.deployments_of(self.namespace, self.name)
                   if view.revision.startswith(COMPARATOR_REVISION)]
        if any(view.revision == revision for view in running):
            return
        if compare.judge is not None and compare.judge.secret_ref is not None:
            self._check_judge_secret(compare.judge.url, compare.judge.secret_ref.name)
        name = deployment["metadata"]["name"]
        if running:
            replaced = self.apps.replace_namespaced_deployment(name, self.namespace, deployment)  # type: ignore[arg-type]
            self._record("Deployment", name, replaced)
            return
        try:
            created = self.apps.create_namespaced_deployment(self.namespace, deployment)  # type: ignore[arg-type]
        except client.ApiException as error:
            if error.status != 409:
                raise
            self._check_existing_deployment(name)
            return
        self._record("Deployment", name, created)

    def _check_judge_secret(self, url: str, secret: str) -> None:
        """Read when the comparator is created or replaced only: Secrets are not watched (least privilege)."""
        try:
            found = self.core.read_namespaced_secret(secret, self.namespace)
        except client.ApiException as error:
            if error.status in (403, 404):
                raise ComparatorUnavailable(f"Secret {self.namespace}/{secret} (compare.judge.secretRef) is "
                                            f"{'missing' if error.status == 404 else 'not readable'}") from None
            raise
        annotations = dict(found.metadata.annotations or {}) if found.metadata else {}
        check_judge_secret(url, annotations, f"{self.namespace}/{secret}")

    def remove_comparator(self) -> None:
        """No comparator: its Deployment and Service go, when the cache shows them."""
        name = comparator_name(self.name)
        running = any(view.revision.startswith(COMPARATOR_REVISION)
                      for view in self.cache.deployments_of(self.namespace, self.name))
        service = self.cache.service(self.namespace, name)
        for present, delete in ((running, self.apps.delete_namespaced_deployment),
                                (service is not None and self.is_ours(service.rollout_label, service.owner_uids),
                                 self.core.delete_namespaced_service)):
            if not present:
                continue
            try:
                delete(name, self.namespace, propagation_policy="Background")
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
