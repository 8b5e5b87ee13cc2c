"""What an operator under a ServiceAccount calls, from the apiserver's audit log, against what its
RBAC grants; and the scenarios that make it call everything it ever needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import client

from controller.workloads import deployment_name, revision_of
from tests.integration.rollout_helpers import Rollouts, httproute, rollout_body, virtualservice, wait_until, with_image

Call = tuple[str, str, str]  # (API group, resource[/subresource], verb)


def calls(audit_log: Path, user: str) -> tuple[set[Call], list[str]]:
    """(group, resource[/subresource], verb) of every request by `user`, and the denied ones."""
    used: set[Call] = set()
    denied = []
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef")
        if event["user"]["username"] != user or ref is None or event["stage"] != "ResponseComplete":
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, event["verb"]))
        # RBAC's own refusals; a 403 for a namespace being deleted is not one.
        if event.get("annotations", {}).get("authorization.k8s.io/decision") == "forbid":
            denied.append(f"{event['verb']} {ref.get('apiGroup', '')}/{resource}")
    return used, denied


def granted(objects: list[dict[str, Any]]) -> set[Call]:
    return {(group, resource, verb)
            for obj in objects if obj["kind"] in ("Role", "ClusterRole")
            and not any(label.startswith("rbac.authorization.k8s.io/aggregate-to-")
                        for label in obj["metadata"].get("labels") or {})  # users' grants, not the operator's
            for rule in obj["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


def _foreign_deployment(name: str) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(replicas=0, selector=client.V1LabelSelector(match_labels=labels),
                                     template=client.V1PodTemplateSpec(
                                         metadata=client.V1ObjectMeta(labels=labels),
                                         spec=client.V1PodSpec(containers=[client.V1Container(name="x",
                                                                                              image="x")]))))


def scenarios(api_client: client.ApiClient, namespace: str) -> None:
    """Every path that needs a grant: both routers, a route that appears late, a new revision, a scale
    change, a Deployment that is not ours, a Secret, a delete."""
    rollouts = Rollouts(api_client, namespace)
    steps: list[dict[str, Any]] = [{"shadow": {"percent": 20, "duration": "1s"}},
                                   {"canary": {"weight": 40, "duration": "1s"}}]
    gateway = rollout_body("scorer", steps, {"gatewayAPI": {"httpRoute": "scorer"}}, gpus=0, delay=0)
    rollouts.create(gateway)
    rollouts.create(rollout_body("ranker", steps, {"istio": {"virtualService": "ranker"}}, gpus=0))
    # Not in the route cache yet: the operator reads each route from the API, and waits for it.
    for name in ("scorer", "ranker"):
        rollouts.wait_status(name, lambda s: "not found" in s.get("message", ""), what="its route missing")
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    rollouts.create_object("networking.istio.io", "v1", "virtualservices", virtualservice("ranker"))
    for name in ("scorer", "ranker"):
        rollouts.wait_status(name, lambda s: s.get("phase") == "Completed", what=f"{name} deployed")
    first = rollouts.status("scorer")["stableRevision"]
    rollouts.patch("scorer", with_image(gateway, "scorer:v2", gpus=0))
    rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed" and s.get("stableRevision") != first,
                         what="scorer:v2 promoted")
    rollouts.patch("scorer", {"spec": {"replicas": 3}})
    apps = client.AppsV1Api(api_client)
    wait_until(lambda: any(d.spec.replicas == 3 for d in apps.list_namespaced_deployment(namespace).items),
             what="the stable scaled to 3")

    # A Deployment by the name the operator needs, and not its own: read, and refused.
    taken = rollout_body("taken", steps, {"gatewayAPI": {"httpRoute": "taken"}}, gpus=0)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("taken"))
    name = deployment_name("taken", revision_of(taken["spec"]["template"]))
    apps.create_namespaced_deployment(namespace, _foreign_deployment(name))
    rollouts.create(taken)
    rollouts.wait_status("taken", lambda s: "not managed by this ModelRollout" in s.get("message", ""),
                         what="the foreign Deployment refused")

    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("creds"))
    creds = rollout_body("creds", [{"canary": {"weight": 10, "duration": "1h"}}],
                         {"gatewayAPI": {"httpRoute": "creds"}}, gpus=0)
    creds["spec"]["analysis"] = {"prometheus": {"address": "https://127.0.0.1:9/", "secretRef": {"name": "prom"}},
                                 "guardrails": [{"name": "errors", "template": "errorRate", "ignoreBelow": 0.05}]}
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="prom"), string_data={"token": "t"}))
    rollouts.create(creds)
    rollouts.wait_status("creds", lambda s: s.get("phase") == "Completed", what="creds deployed")
    rollouts.patch("creds", with_image(creds, "scorer:v2", gpus=0))
    rollouts.wait_status("creds", lambda s: any("prom" in c.get("message", "") for c in s.get("conditions", [])),
                         what="the Secret read, and refused")
    _compared(api_client, rollouts)
    rollouts.delete("ranker")
    wait_until(lambda: "ranker" not in rollouts.names(), what="ranker deleted through its finalizer")


def _compared(api_client: client.ApiClient, rollouts: Rollouts) -> None:
    """Shadow steps that compare: the comparator created, replaced for the next step's rules, removed after."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("judge"))
    steps: list[dict[str, Any]] = [{"shadow": {"percent": 20, "duration": "1h", "compare": {"format": "bytes"}}},
                                   {"shadow": {"percent": 20, "duration": "1h", "compare": {"format": "json"}}},
                                   {"canary": {"weight": 40, "duration": "1s"}}]
    judge = rollout_body("judge", steps, {"gatewayAPI": {"httpRoute": "judge"}}, gpus=0, delay=0)
    judge["spec"]["analysis"] = {}
    rollouts.create(judge)
    rollouts.wait_status("judge", lambda s: s.get("phase") == "Completed", what="judge deployed")
    rollouts.patch("judge", with_image(judge, "scorer:v2", gpus=0))

    def named(listed: Any) -> dict[str, Any]:
        plain = api_client.sanitize_for_serialization(listed)  # type: ignore[no-untyped-call]
        return {item["metadata"]["name"]: item for item in plain["items"]}

    def comparing(format_: str) -> bool:
        found = named(apps.list_namespaced_deployment(rollouts.namespace)).get("judge-compare")
        return found is not None and format_ in found["spec"]["template"]["spec"]["containers"][0]["args"]

    # Each action a value of its own (`verb@anything`): the same value twice is no change to the object.
    # As `kubectl modelrollout promote` does, the next action waits until the operator took the last
    # and stored its step: a second annotation written before would replace the first unread.
    wait_until(lambda: comparing("bytes"), what="the first step's comparator")
    rollouts.act("judge", "promote@1")
    rollouts.wait_status("judge", lambda s: s.get("currentStep") == 1 and not s.get("pendingAction"),
                         what="the first promote taken")
    wait_until(lambda: comparing("json"), what="the comparator replaced for the second step's rules")
    rollouts.act("judge", "promote@2")
    wait_until(lambda: "judge-compare" not in named(apps.list_namespaced_deployment(rollouts.namespace))
               and "judge-compare" not in named(core.list_namespaced_service(rollouts.namespace)),
               what="the comparator removed after the last compared step")
