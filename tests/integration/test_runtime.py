"""The runtime on the sandbox: actions never wait on analysis, failures become conditions, deletion keeps
traffic flowing, nothing is taken over, and every transition is told exactly once."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
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
    wait_until,
    with_image,
)

pytestmark = pytest.mark.cluster

GATEWAY = {"gatewayAPI": {"httpRoute": "scorer"}}
ACTION = api.ACTION_ANNOTATION
HTTPROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")


@pytest.fixture
def rollouts(api_client: client.ApiClient, namespace: str, crd_installed: None) -> Rollouts:
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object(*HTTPROUTES, httproute("scorer"))
    return rollouts


def assert_no_traceback(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


def events(api_client: client.ApiClient, namespace: str, name: str) -> Counter[str]:
    listing = client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}")
    return Counter(str(event.reason) for event in listing.items)


class HungServer:
    """A loopback TCP server that accepts requests and never answers (a hung Prometheus)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            connection.recv(65536)  # the request; no answer ever follows
            with self.lock:
                self.held.append(connection)

    def open_requests(self) -> int:
        with self.lock:
            return len(self.held)

    def close(self) -> None:
        self.socket.close()
        with self.lock:
            for connection in self.held:
                connection.close()


@pytest.fixture
def hung_prometheus() -> Iterator[HungServer]:
    server = HungServer()
    try:
        yield server
    finally:
        server.close()


def _deployed(rollouts: Rollouts, body: dict[str, Any]) -> dict[str, Any]:
    rollouts.create(body)
    return rollouts.wait_status(body["metadata"]["name"], lambda s: s.get("phase") == "Completed",
                                what="first revision deployed")


def test_first_deploy_completes_for_kubectl_wait(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path,
) -> None:
    body = rollout_body("scorer", [{"canary": {"weight": 10, "duration": "1h"}}], GATEWAY)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        kubectl(kubeconfig, "-n", namespace, "wait", "--for=condition=Completed", "mro/scorer", "--timeout=60s")
    assert_no_traceback(tmp_path / "operator.log")


def test_abort_is_carried_out_while_a_hung_prometheus_still_holds_the_analysis(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, hung_prometheus: HungServer,
) -> None:
    body = rollout_body("scorer", [{"canary": {"weight": 30, "duration": "1h"}}], GATEWAY)
    body["spec"]["analysis"] = {
        "prometheus": {"address": f"http://127.0.0.1:{hung_prometheus.port}"},
        "interval": "30s",
        "guardrails": [{"name": "errors", "template": "errorRate", "ignoreBelow": 0.05}],
    }
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 30, what="canary 30")
        wait_until(hung_prometheus.open_requests, what="an analysis query hanging on Prometheus")
        hanging = hung_prometheus.open_requests()
        kubectl(kubeconfig, "-n", namespace, "annotate", "mro", "scorer", f"{ACTION}=abort")
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", what="aborted")
        assert httproute_state(rollouts, "scorer") == (0, 0)
        # The run's deadline is 15 s and its query timeout 5 s: had the abort waited for
        # the analysis, the hanging query would have been given up (and a new one sent).
        assert hung_prometheus.open_requests() == hanging, "the abort did not wait for the hung query"
    assert_no_traceback(tmp_path / "operator.log")


def test_a_service_we_did_not_create_is_never_taken_over(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient,
) -> None:
    core = client.CoreV1Api(api_client)
    theirs = {"app": "someone-else"}
    core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="scorer-stable"),
        spec=client.V1ServiceSpec(selector=theirs, ports=[client.V1ServicePort(port=80)])))
    body = rollout_body("scorer", [{"canary": {"weight": 10, "duration": "1h"}}], GATEWAY)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        status = rollouts.wait_status(
            "scorer", lambda s: any(c["reason"] == "OwnershipConflict" for c in s.get("conditions", [])),
            what="ownership conflict condition")
        assert "scorer-stable" in status["message"]
        wait_until(lambda: "OwnershipConflict" in events(api_client, namespace, "scorer"), what="the Event")
    service = core.read_namespaced_service("scorer-stable", namespace)
    assert service.spec is not None and service.spec.selector == theirs, "their selector is untouched"
    assert_no_traceback(tmp_path / "operator.log")


def test_a_missing_secret_is_named_in_a_condition_and_an_event(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient,
) -> None:
    body = rollout_body("scorer", [{"canary": {"weight": 10, "duration": "1h"}}], GATEWAY)
    body["spec"]["analysis"] = {
        "prometheus": {"address": "http://127.0.0.1:9", "secretRef": {"name": "prom-creds"}},
        "interval": "1s",
        "guardrails": [{"name": "errors", "template": "errorRate", "ignoreBelow": 0.05}],
    }
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        status = rollouts.wait_status(
            "scorer", lambda s: any("prom-creds" in c.get("message", "") for c in s.get("conditions", [])),
            what="a condition naming the Secret")
        assert status["phase"] == "Paused"
        # The Event follows the status that records the transition.
        wait_until(lambda: "AnalysisError" in events(api_client, namespace, "scorer"), what="AnalysisError Event")
    assert_no_traceback(tmp_path / "operator.log")


def test_a_malformed_status_becomes_a_condition_and_the_operator_goes_on(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient,
) -> None:
    body = rollout_body("scorer", [{"canary": {"weight": 10, "duration": "1h"}}], GATEWAY, gpus=0)
    other = rollout_body("other", [{"canary": {"weight": 10, "duration": "1h"}}],
                         {"gatewayAPI": {"httpRoute": "other"}}, gpus=0)
    rollouts.create_object(*HTTPROUTES, httproute("other"))
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        _deployed(rollouts, other)
        rollouts.patch("scorer", with_image(body, "scorer:v2", gpus=0))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 10, what="canary 10")
        rollouts.patch_status("scorer", {"stepStartedAt": "yesterday, roughly"})
        rollouts.wait_status("scorer", lambda s: any(c["reason"] == "ReconcileError" for c in s.get("conditions", [])),
                             what="a condition for the malformed status")
        assert httproute_state(rollouts, "scorer") == (10, 0), "traffic stays where a step put it"
        # One bad object never holds up another.
        rollouts.patch("other", with_image(other, "other:v2", gpus=0))
        rollouts.wait_status("other", lambda s: s.get("canaryWeight") == 10, what="the other rollout moves on")
    assert_no_traceback(tmp_path / "operator.log")


def test_a_route_edited_by_someone_else_is_put_back(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path,
) -> None:
    body = rollout_body("scorer", [{"canary": {"weight": 20, "duration": "1h"}}], GATEWAY)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 20, what="canary 20")
        route = rollouts.get_object(*HTTPROUTES, "scorer")
        for ref in route["spec"]["rules"][1]["backendRefs"]:
            ref["weight"] = 50
        rollouts.custom.replace_namespaced_custom_object(*HTTPROUTES[:2], namespace, HTTPROUTES[2], "scorer", route)
        wait_until(lambda: httproute_state(rollouts, "scorer") == (20, 0), what="route put back to the step's weights")
    assert_no_traceback(tmp_path / "operator.log")


def test_every_transition_is_told_exactly_once(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient,
) -> None:
    steps: list[dict[str, Any]] = [{"shadow": {"percent": 50, "duration": "2s"}},
                                   {"canary": {"weight": 20, "duration": "2s"}}]
    body = rollout_body("scorer", steps, GATEWAY)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed"
                             and bool(s.get("previousStableRevision")), what="promoted")
        wait_until(lambda: events(api_client, namespace, "scorer")["Promoted"], what="the Promoted Event")
    told = events(api_client, namespace, "scorer")
    assert told["Deployed"] == 1
    assert told["RolloutStarted"] == 1
    assert told["StepStarted"] == 2
    assert told["StepCompleted"] == 2
    assert told["Promoted"] == 1
    assert told["CandidateReady"] == 1
    assert_no_traceback(tmp_path / "operator.log")


@pytest.mark.parametrize("step", ["shadow", "canary"])
def test_delete_mid_rollout_routes_to_stable_and_orphans_what_serves(
    step: str, rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient,
) -> None:
    steps = [{"shadow": {"percent": 50, "duration": "1h"}}] if step == "shadow" else \
        [{"canary": {"weight": 40, "duration": "1h"}}]
    body = rollout_body("scorer", steps, GATEWAY)
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        first = _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 40 or s.get("mirrorPercent") == 50,
                             what=f"{step} step")
        rollouts.delete("scorer")
        wait_until(lambda: not rollouts.names(), what="the ModelRollout gone")
    assert httproute_state(rollouts, "scorer") == (0, 0), "all traffic on the stable"
    stable = apps.read_namespaced_deployment(f"scorer-{first['stableRevision']}", namespace)
    assert stable.metadata is not None and not stable.metadata.owner_references, "the stable outlives the rollout"
    for name in ("scorer-stable", "scorer-candidate"):
        service = core.read_namespaced_service(name, namespace)
        assert service.metadata is not None and not service.metadata.owner_references
        assert service.spec is not None and service.spec.selector is not None
        assert service.spec.selector["rollouts.mlops.dev/revision"] == first["stableRevision"]
    names = {d.metadata.name for d in apps.list_namespaced_deployment(namespace).items if d.metadata}
    assert names == {f"scorer-{first['stableRevision']}"}, "the candidate is removed"
    assert_no_traceback(tmp_path / "operator.log")


def test_delete_with_delete_policy_removes_everything_no_route_needs(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient,
) -> None:
    body = rollout_body("scorer", [{"canary": {"weight": 40, "duration": "1h"}}], GATEWAY)
    body["spec"]["deletionPolicy"] = "Delete"
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        _deployed(rollouts, body)
        # The route's owner sends its traffic elsewhere: nothing needs scorer-stable any more.
        route = rollouts.get_object(*HTTPROUTES, "scorer")
        route["spec"]["rules"][1]["backendRefs"] = [{"name": "elsewhere", "port": 8080}]
        rollouts.custom.replace_namespaced_custom_object(*HTTPROUTES[:2], namespace, HTTPROUTES[2], "scorer", route)
        wait_until(lambda: (rollouts.condition("scorer", "RouteManaged") or {}).get("reason") == "RouteTakenBack",
                 what="the take-back seen")
        rollouts.delete("scorer")
        # The garbage collector (kube-controller-manager) removes what the rollout owned.
        wait_until(lambda: not client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items
                 and not client.CoreV1Api(api_client).list_namespaced_service(namespace).items,
                 what="every owned object removed")
    assert_no_traceback(tmp_path / "operator.log")


def test_an_action_written_while_another_is_pending_is_applied_after_it(
    rollouts: Rollouts, namespace: str, kubeconfig: Path, tmp_path: Path, api_client: client.ApiClient,
) -> None:
    """Regression: a retry written while an abort was pending (taken into status.pendingAction,
    its annotation not yet removed) was taken off the object and lost. The operator is stopped
    at exactly that point: the abort pending in status, the retry on the annotation."""
    body = rollout_body("scorer", [{"canary": {"weight": 10, "duration": "1h"}}], GATEWAY, gpus=0)
    log = tmp_path / "operator.log"
    with operator_process(kubeconfig, namespace, log):
        _deployed(rollouts, body)
        rollouts.patch("scorer", with_image(body, "scorer:v2", gpus=0))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 10, what="canary 10")
    rollouts.patch_status("scorer", {"pendingAction": "abort"})
    rollouts.act("scorer", "retry")
    with operator_process(kubeconfig, namespace, log):
        wait_until(lambda: events(api_client, namespace, "scorer")["Retried"] == 1, what="the retry applied")
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 10 and s.get("lastAction") == "retry",
                             what="back in the canary step")
    told = events(api_client, namespace, "scorer")
    assert told["RolledBack"] == 1, "the pending abort went first"
    assert_no_traceback(log)
