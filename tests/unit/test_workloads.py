"""`Workloads` and the reconciler's plumbing, driven through the engine's `Target` protocol.

No cluster: the Kubernetes client's transport (`ApiClient.call_api`, its public seam) answers from a
table and records each request, and the watch-fed cache is filled with the views the index
functions build from plain bodies. What is checked is what reaches the API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import rest

from controller import api
from controller.engine.actions import DeleteRevision, EnsureRevision, OrphanRevision, ScaleRevision, SelectServices
from controller.engine.execute import Target, execute
from controller.kube.cache import REVISION_LABEL, ROLLOUT_LABEL, Cache, deployment_view, service_view
from controller.kube.own_writes import OwnWrites
from controller.measure.measure import AnalysisIO
from controller.reconciler import FINALIZER, ClusterTarget, Context, StaleSnapshot, reconcile_object
from controller.workloads import (
    ComparatorUnavailable,
    OwnershipConflict,
    Workloads,
    comparator_manifests,
    deployment_manifest,
    revision_of,
)

NS, NAME, UID = "ns", "scorer", "uid-1"
NOW = datetime(2026, 12, 6, tzinfo=UTC)
TEMPLATE = {"spec": {"containers": [{"name": "model", "image": "scorer:v1"}]}}
REV = revision_of(TEMPLATE)


@dataclass
class _Raw:
    """What rest.RESTResponse wraps: urllib3's response, reduced to what the client reads."""

    status: int
    data: bytes
    reason: str = ""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


class RecordingApi(client.ApiClient):
    """Answers each request from `answers` ((method, path suffix) -> (status, body)); otherwise as an
    apiserver does, with the object written and a new resourceVersion."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, dict[str, Any]]] | None = None) -> None:
        configuration = client.Configuration()
        configuration.host = "https://apiserver.test"
        super().__init__(configuration)
        self.answers = answers or {}
        self.calls: list[tuple[str, str, Any]] = []

    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> rest.RESTResponse:
        path = url.removeprefix("https://apiserver.test").split("?")[0]
        self.calls.append((method, path, body))
        status, answer = next((found for (m, suffix), found in self.answers.items()
                               if m == method and path.endswith(suffix)),
                              (200, self._stored(path, body)))
        raw = rest.RESTResponse(_Raw(status, json.dumps(answer).encode()))
        raw.read()  # type: ignore[no-untyped-call]
        if status >= 400:
            raise client.ApiException(http_resp=raw)
        return raw

    def _stored(self, path: str, body: Any) -> dict[str, Any]:
        written = json.loads(json.dumps(body)) if isinstance(body, dict) else {}
        if "/deployments/" in path and not path.endswith("/scale"):
            written.setdefault("spec", {"selector": {}, "template": {}})  # a patch's answer is the whole object
        written.setdefault("metadata", {})["resourceVersion"] = str(len(self.calls) + 100)
        return written

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _ in self.calls if method != "GET"]


class Store(list[Any]):
    """A Kopf index's store: an iterable of the values filed under one key."""


def owner() -> dict[str, Any]:
    return {"apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND,
            "metadata": {"namespace": NS, "name": NAME, "uid": UID, "resourceVersion": "7", "generation": 1,
                         "finalizers": [FINALIZER]},
            "spec": {"model": "scorer", "replicas": 2, "template": TEMPLATE,
                     "trafficRouting": {"replicas": {}}, "strategy": {"steps": [{"canary": {"weight": 50}}]}}}


def spec() -> api.ModelRolloutSpec:
    return api.ModelRolloutSpec.model_validate(owner()["spec"])


def cache(deployments: Sequence[dict[str, Any]] = (), services: Sequence[dict[str, Any]] = ()) -> Cache:
    views = [view for view in map(deployment_view, deployments) if view is not None]
    return Cache(rollouts={(NS, NAME): Store([owner()])}, rollouts_by_route={},
                 deployments={(NS, NAME): Store(views)} if views else {},
                 services={(NS, body["metadata"]["name"]): Store([service_view(body)]) for body in services},
                 unschedulable={}, routes={})


def deployment(replicas: int, ready: int) -> dict[str, Any]:
    body = deployment_manifest(owner(), spec(), REV, replicas)
    body["metadata"]["resourceVersion"] = "3"
    body["metadata"]["ownerReferences"][0]["uid"] = UID
    body["status"] = {"readyReplicas": ready}
    return body


def service(name: str, labels: dict[str, str], owners: list[str], selector: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "labels": labels, "resourceVersion": "4",
                         "ownerReferences": [{"uid": uid} for uid in owners]},
            "spec": {"selector": selector}}


def ours(name: str, revision: str | None) -> dict[str, Any]:
    selector = {ROLLOUT_LABEL: NAME, **({REVISION_LABEL: revision} if revision else {})}
    return service(name, {ROLLOUT_LABEL: NAME}, [UID], selector)


def target(api_client: RecordingApi, view: Cache, adopt: bool = True) -> Target:
    workloads = Workloads(api_client, view, OwnWrites(), owner(), spec(), adopt=adopt)
    return ClusterTarget(workloads, router=None)


def test_a_new_revision_is_created_once_with_its_services() -> None:
    api_client = RecordingApi()
    execute([EnsureRevision(REV, 2), SelectServices(REV, REV)], target(api_client, cache()))
    assert api_client.writes() == [
        ("POST", f"/apis/apps/v1/namespaces/{NS}/deployments"),
        ("POST", f"/api/v1/namespaces/{NS}/services"),
        ("POST", f"/api/v1/namespaces/{NS}/services"),
        ("POST", f"/api/v1/namespaces/{NS}/services"),
    ]
    created = api_client.calls[0][2]
    assert created["spec"]["replicas"] == 2
    assert created["metadata"]["ownerReferences"][0]["uid"] == UID
    assert [call[2]["metadata"]["name"] for call in api_client.calls[1:]] == [
        f"{NAME}-stable", f"{NAME}-candidate", NAME]


def test_a_steady_world_costs_no_api_call() -> None:
    api_client = RecordingApi()
    world = cache([deployment(2, 2)], [ours(f"{NAME}-stable", REV), ours(f"{NAME}-candidate", REV), ours(NAME, None)])
    execute([EnsureRevision(REV, 2), SelectServices(REV, REV), ScaleRevision(REV, 2)], target(api_client, world))
    assert api_client.calls == []


def test_a_create_only_ensure_leaves_an_existing_revision_at_its_size() -> None:
    api_client = RecordingApi()
    execute([EnsureRevision(REV, 5, create_only=True)], target(api_client, cache([deployment(2, 2)])))
    assert api_client.calls == []


def test_a_size_change_patches_the_scale_subresource() -> None:
    api_client = RecordingApi()
    execute([EnsureRevision(REV, 4)], target(api_client, cache([deployment(2, 2)])))
    assert api_client.writes() == [("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-{REV}/scale")]
    assert api_client.calls[0][2] == {"spec": {"replicas": 4}}


def test_a_service_that_is_not_ours_is_never_taken_over() -> None:
    api_client = RecordingApi()
    foreign = service(f"{NAME}-stable", {"team": "other"}, ["someone-else"], {"app": "theirs"})
    with pytest.raises(OwnershipConflict, match="label it"):
        execute([SelectServices(REV, REV)], target(api_client, cache(services=[foreign])))
    assert api_client.writes() == []


def test_a_deployment_name_taken_by_someone_else_is_a_conflict() -> None:
    theirs = {"metadata": {"name": f"{NAME}-{REV}", "namespace": NS, "labels": {"team": "other"}},
              "spec": {"selector": {}, "template": {}}}
    api_client = RecordingApi({("POST", "/deployments"): (409, {"reason": "AlreadyExists"}),
                               ("GET", f"/deployments/{NAME}-{REV}"): (200, theirs)})
    with pytest.raises(OwnershipConflict, match="not managed by this ModelRollout"):
        execute([EnsureRevision(REV, 2)], target(api_client, cache()))


def test_a_handed_over_service_is_adopted_but_not_while_deleting() -> None:
    handed = service(f"{NAME}-stable", {ROLLOUT_LABEL: NAME}, [], {ROLLOUT_LABEL: NAME, REVISION_LABEL: REV})
    adopting = RecordingApi()
    execute([SelectServices(REV, REV)], target(adopting, cache(services=[
        handed, ours(f"{NAME}-candidate", REV), ours(NAME, None)])))
    assert adopting.writes() == [("PATCH", f"/api/v1/namespaces/{NS}/services/{NAME}-stable")]
    assert adopting.calls[0][2]["metadata"]["ownerReferences"][0]["uid"] == UID
    deleting = RecordingApi()
    execute([SelectServices(REV, REV)], target(deleting, cache(services=[
        handed, ours(f"{NAME}-candidate", REV), ours(NAME, None)]), adopt=False))
    assert deleting.calls == []


def test_orphaning_releases_only_what_is_ours() -> None:
    api_client = RecordingApi()
    foreign = service(NAME, {"team": "other"}, [], {"app": "theirs"})
    world = cache([deployment(2, 2)], [ours(f"{NAME}-stable", REV), ours(f"{NAME}-candidate", REV), foreign])
    execute([OrphanRevision(REV)], target(api_client, world))
    assert api_client.writes() == [
        ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-{REV}"),
        ("PATCH", f"/api/v1/namespaces/{NS}/services/{NAME}-stable"),
        ("PATCH", f"/api/v1/namespaces/{NS}/services/{NAME}-candidate"),
    ]
    assert all(call[2] == {"metadata": {"ownerReferences": None}} for call in api_client.calls)


def test_deleting_a_revision_someone_already_deleted_is_done() -> None:
    api_client = RecordingApi({("DELETE", f"/deployments/{NAME}-{REV}"): (404, {"reason": "NotFound"})})
    execute([DeleteRevision(REV)], target(api_client, cache([deployment(2, 2)])))
    assert api_client.writes() == [("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-{REV}")]


# --- the reconciler's plumbing: observe -> plan -> measure -> decide -> execute -> commit ---------------


def context(api_client: RecordingApi, view: Cache) -> Context:
    def no_secret(namespace: str, name: str) -> Any:
        raise AssertionError("nothing here reads a Secret")
    return Context(api_client, view, OwnWrites(), AnalysisIO(pool=None, read_secret=no_secret))  # type: ignore[arg-type]


def status_written(api_client: RecordingApi) -> dict[str, Any]:
    found: dict[str, Any] = next(body for _, path, body in reversed(api_client.calls) if path.endswith("/status"))
    return found


def test_a_first_reconcile_creates_the_revision_and_commits_status_last() -> None:
    api_client = RecordingApi()
    outcome = reconcile_object(context(api_client, cache()), owner(), NOW)
    writes = api_client.writes()
    assert writes[0] == ("POST", f"/apis/apps/v1/namespaces/{NS}/deployments")
    assert [path.endswith(f"/{NAME}/status") for _, path in writes] == [False] * 4 + [True], \
        "one status write, after every action"
    assert outcome.transition is not None and outcome.written is not None
    stored = status_written(api_client)
    assert stored["metadata"]["resourceVersion"] == "7", "the status write is conditional on the snapshot"
    assert stored["status"]["state"] == outcome.transition.status.state.value == api.RolloutState.DEPLOYING.value


def test_a_conflicting_status_write_is_a_stale_snapshot_with_no_event() -> None:
    api_client = RecordingApi({("PUT", f"/{NAME}/status"): (409, {"reason": "Conflict"})})
    world = cache([deployment(2, 2)], [ours(f"{NAME}-stable", REV), ours(f"{NAME}-candidate", REV), ours(NAME, None)])
    deploying = owner()
    first = RecordingApi()
    reconcile_object(context(first, cache()), deploying, NOW)
    deploying["status"] = status_written(first)["status"]
    with pytest.raises(StaleSnapshot):
        reconcile_object(context(api_client, world), deploying, NOW)
    assert not any(path.endswith("/events") for _, path in api_client.writes()), "no Event for a transition not stored"


def test_a_settled_rollout_costs_no_write() -> None:
    world = cache([deployment(2, 2)], [ours(f"{NAME}-stable", REV), ours(f"{NAME}-candidate", REV), ours(NAME, None)])
    body = owner()
    api_client = RecordingApi()
    reconcile_object(context(api_client, world), body, NOW)  # the cache already shows it ready
    body["status"] = status_written(api_client)["status"]
    assert body["status"]["state"] == api.RolloutState.STABLE.value
    again = RecordingApi()
    reconcile_object(context(again, world), body, NOW)
    assert again.writes() == [], "a reconcile of a settled rollout is free"


# --- the shadow step's comparator ---------------------------------------------------------------

def compared_spec(**compare: Any) -> api.ModelRolloutSpec:
    body = {**owner()["spec"], "trafficRouting": {"gatewayAPI": {"httpRoute": "scorer"}}, "analysis": {},
            "strategy": {"steps": [{"shadow": {"duration": "1m", "compare": {"format": "json", **compare}}}]}}
    return api.ModelRolloutSpec.model_validate(body)


def comparator_target(api_client: RecordingApi, view: Cache, image: str | None = "registry/modelrollout:0.1.0",
                      **compare: Any) -> Target:
    shown = compared_spec(**compare)
    return ClusterTarget(Workloads(api_client, view, OwnWrites(), owner(), shown), None, shown, image)


def test_the_comparator_runs_from_the_operators_image_with_the_steps_rules() -> None:
    api_client = RecordingApi()
    comparator_target(api_client, cache(), paths=["$.label"], samples=10, redact=["$.user"]).ensure_comparator(0)
    assert api_client.writes() == [("POST", f"/api/v1/namespaces/{NS}/services"),
                                   ("POST", f"/apis/apps/v1/namespaces/{NS}/deployments")]
    service, deployment = api_client.calls[0][2], api_client.calls[1][2]
    assert service["metadata"]["name"] == deployment["metadata"]["name"] == "scorer-compare"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == UID
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry/modelrollout:0.1.0" and container["command"][0].endswith("modelrollout")
    args = container["args"]
    assert args[:5] == ["compare", "--stable", f"http://scorer-stable.{NS}.svc:8080", "--candidate",
                        f"http://scorer-candidate.{NS}.svc:8080"]
    assert args[args.index("--path"):args.index("--path") + 2] == ["--path", "$.label"]
    assert "--redact" in args and "--samples" in args
    assert service["spec"]["ports"][0] == {"name": "http", "port": 8080, "targetPort": 8080}


def test_a_comparator_that_takes_labels_gets_its_token_from_the_secret_and_a_volume_for_its_store() -> None:
    api_client = RecordingApi()
    comparator_target(api_client, cache(), requestKey="x-request-id", feedback={
        "tokenSecretRef": {"name": "scorer-feedback"}}, labels={"prediction": "$.label", "window": "1h"},
    ).ensure_comparator(0)
    pod = api_client.calls[1][2]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["env"] == [{"name": "MODELROLLOUT_FEEDBACK_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "scorer-feedback", "key": "token"}}}], "the token is never in the Deployment itself"
    assert container["volumeMounts"][0]["mountPath"] == "/var/lib/modelrollout"
    assert pod["volumes"] == [{"name": "store", "emptyDir": {}}]
    args = container["args"]
    for flag, value in (("--key-header", "x-request-id"), ("--labels-prediction", "$.label"),
                        ("--labels-window", "3600.0"), ("--feedback-db", "/var/lib/modelrollout/feedback.sqlite"),
                        ("--labels-task", "classification")):
        assert args[args.index(flag) + 1] == value, (flag, args)
    assert "--judge-calibration" not in args


JUDGE = {"url": "https://judge.models.svc:8000", "model": "judge-7b", "secretRef": {"name": "judge-token"}}


def secret(annotations: dict[str, str]) -> tuple[int, dict[str, Any]]:
    return 200, {"metadata": {"name": "judge-token", "namespace": NS, "annotations": annotations}, "data": {}}


def test_a_judges_token_goes_only_where_its_secret_allows() -> None:
    allowed = RecordingApi({("GET", "/secrets/judge-token"): secret(
        {f"{api.GROUP}/judge-addresses": "https://other.example https://judge.models.svc:8000/"})})
    comparator_target(allowed, cache(), format="openai", judge=JUDGE).ensure_comparator(0)
    container = allowed.calls[-1][2]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "MODELROLLOUT_JUDGE_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "judge-token", "key": "token"}}}]
    args = container["args"]
    for flag, value in (("--judge-url", JUDGE["url"]), ("--judge-model", "judge-7b"), ("--judge-budget", "5000"),
                        ("--judge-swap-percent", "10"), ("--judge-timeout", "30.0")):
        assert args[args.index(flag) + 1] == value, (flag, args)
    for allowing, why in (({}, "lists none"), ({f"{api.GROUP}/judge-addresses": "https://judge.example"},
                                                   "lists https://judge.example")):
        refused = RecordingApi({("GET", "/secrets/judge-token"): secret(allowing)})
        with pytest.raises(ComparatorUnavailable, match=why):
            comparator_target(refused, cache(), format="openai", judge=JUDGE).ensure_comparator(0)
        assert not [w for w in refused.writes() if "deployments" in w[1]], "nothing runs that would send it"
    plain = RecordingApi({("GET", "/secrets/judge-token"): secret({f"{api.GROUP}/judge-addresses": "http://judge"})})
    with pytest.raises(ComparatorUnavailable, match="plain text"):
        comparator_target(plain, cache(), format="openai", judge={**JUDGE, "url": "http://judge"}).ensure_comparator(0)
    missing = RecordingApi({("GET", "/secrets/judge-token"): (404, {})})
    with pytest.raises(ComparatorUnavailable, match="missing"):
        comparator_target(missing, cache(), format="openai", judge=JUDGE).ensure_comparator(0)


def test_a_running_comparator_with_these_rules_is_left_alone_and_other_rules_replace_it() -> None:
    shown = compared_spec()
    assert shown.strategy.steps[0].shadow is not None and shown.strategy.steps[0].shadow.compare is not None
    deployment, service = comparator_manifests(owner(), shown, shown.strategy.steps[0].shadow.compare,
                                               "registry/modelrollout:0.1.0")
    deployment["metadata"]["resourceVersion"] = "5"
    service["metadata"].update(namespace=NS, resourceVersion="6")
    running = cache([deployment], [service])
    api_client = RecordingApi()
    comparator_target(api_client, running).ensure_comparator(0)
    assert api_client.writes() == [], "already running with these rules: no call"
    comparator_target(api_client, running, ignore=["$.id"]).ensure_comparator(0)
    assert api_client.writes() == [("PUT", f"/apis/apps/v1/namespaces/{NS}/deployments/scorer-compare")]
    comparator_target(api_client, running).remove_comparator()
    assert api_client.writes()[1:] == [("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/scorer-compare"),
                                       ("DELETE", f"/api/v1/namespaces/{NS}/services/scorer-compare")]
    quiet = RecordingApi()
    comparator_target(quiet, cache()).remove_comparator()
    assert quiet.writes() == [], "nothing to remove: no call"


def test_without_an_image_the_step_fails_with_the_reason() -> None:
    with pytest.raises(ComparatorUnavailable, match="--comparator-image"):
        comparator_target(RecordingApi(), cache(), image=None).ensure_comparator(0)
