"""Chaos: SIGKILL the operator at random and at aimed moments, and restart kube-apiserver mid-canary.

A watch records every stored state of the HTTPRoute; the weights must only move
along the steps (never back), and every rollout must end Completed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from devkit.sandbox.cluster import Sandbox, SandboxState
from e2e.harness import httproute_weights, start_operator, stop_process
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from tests.integration.rollout_helpers import (
    Rollouts,
    httproute,
    operator_process,
    rollout_body,
    wait_until,
    with_image,
)

pytestmark = pytest.mark.cluster

ROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")
STEPS: list[dict[str, Any]] = [
    {"shadow": {"percent": 50, "duration": "2s"}},
    {"canary": {"weight": 10, "duration": "2s"}},
    {"canary": {"weight": 50, "duration": "2s"}},
    {"abTest": {"weight": 60, "maxDuration": "2s", "headerRoute": {"name": "x-arm", "value": "b"}}},
    {"pause": {}},
]
# The traffic states the steps describe, in order; the last (0, 0) is after the Services swapped.
ORDER = [(0, 0), (0, 50), (10, 0), (50, 0), (60, 0), (100, 0)]


class RouteRecorder:
    """Every state of one HTTPRoute, as a watch delivers it."""

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace, self.name = namespace, name
        self.states: list[tuple[int, int]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        version = None
        while not self.stopped.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                        self.custom.list_namespaced_custom_object, *ROUTES[:2], self.namespace, ROUTES[2],
                        field_selector=f"metadata.name={self.name}", resource_version=version, timeout_seconds=5):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    state = httproute_weights(obj, self.name)
                    if not self.states or self.states[-1] != state:
                        self.states.append(state)
            except (ProtocolError, client.ApiException, OSError):
                version = None
                time.sleep(0.2)

    def stop(self) -> list[tuple[int, int]]:
        self.stopped.set()
        self.thread.join(10)
        return self.states


def assert_only_forward(states: list[tuple[int, int]]) -> None:
    position = 0
    for state in states:
        if state == (0, 0) and position == len(ORDER) - 1:
            position = len(ORDER)  # promoted: back on the stable Service, which now selects the new model
            continue
        assert state in ORDER and position < len(ORDER), f"{state} is no step's state: {states}"
        index = ORDER.index(state)
        assert index >= position, f"traffic moved back to {state}: {states}"
        position = index


class RestartableOperator:
    """`modelrollout run` as a child process that the test SIGKILLs and starts again (same identity,
    so the new process takes its own Lease back at once, as a restarted pod would)."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path) -> None:
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return start_operator(self.kubeconfig, self.namespace, self.log, "--identity", "chaos")

    def kill_and_restart(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = self._start()

    def stop(self) -> None:
        stop_process(self.process, 15)


@contextmanager
def restartable_operator(kubeconfig: Path, namespace: str, log: Path) -> Iterator[RestartableOperator]:
    operator = RestartableOperator(kubeconfig, namespace, log)
    try:
        yield operator
    finally:
        operator.stop()


def test_sigkill_at_twenty_moments_of_multi_step_rollouts_never_moves_traffic_back(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    rng = random.Random(20261123)
    log = tmp_path / "operator.log"
    rollouts = Rollouts(api_client, namespace)
    kills = 0
    with restartable_operator(kubeconfig, namespace, log) as operator:
        for run in range(4):
            name = f"chaos{run}"
            rollouts.create_object(*ROUTES, httproute(name))
            body = rollout_body(name, STEPS, {"gatewayAPI": {"httpRoute": name}}, gpus=0, replicas=1)
            rollouts.create(body)
            rollouts.wait_status(name, lambda s: s.get("phase") == "Completed", what="deployed")
            recorder = RouteRecorder(api_client, namespace, name)
            rollouts.patch(name, with_image(body, f"{name}:v2", gpus=0))
            # Two random moments while the timed steps run...
            for _ in range(2):
                time.sleep(rng.uniform(0.0, 2.5))
                operator.kill_and_restart()
                kills += 1
            # ...one aimed inside the A/B step, one at the pause, one inside the promotion.
            rollouts.wait_status(name, lambda s: s.get("canaryWeight") == 60 or s.get("phase") == "Paused",
                                 timeout=120, what="A/B step (or past it)")
            operator.kill_and_restart()
            kills += 1
            rollouts.wait_status(name, lambda s: s.get("phase") == "Paused", timeout=120, what="pause step")
            operator.kill_and_restart()
            rollouts.act(name, "promote")
            time.sleep(rng.uniform(0.0, 0.3))
            operator.kill_and_restart()
            kills += 2
            rollouts.wait_status(name, lambda s: s.get("phase") == "Completed"
                                 and bool(s.get("previousStableRevision")), timeout=120, what="promoted")
            wait_until(lambda: httproute_weights(rollouts.get_object(*ROUTES, name), name) == (0, 0),  # noqa: B023
                     what="route back on the stable Service")
            time.sleep(0.5)  # the watch's last events
            states = recorder.stop()
            assert (100, 0) in states and states[-1] == (0, 0), states
            assert_only_forward(states)
    assert kills == 20
    assert "Traceback" not in log.read_text(errors="replace")


def test_kube_apiserver_restarted_mid_canary_loses_and_repeats_no_step(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
    sandbox: SandboxState,
) -> None:
    steps = [{"canary": {"weight": 10, "duration": "6s"}}, {"canary": {"weight": 50, "duration": "4s"}}]
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object(*ROUTES, httproute("scorer"))
    body = rollout_body("scorer", steps, {"gatewayAPI": {"httpRoute": "scorer"}}, gpus=0, replicas=1)
    instance = Sandbox(name=sandbox.name)
    pid_file = next(instance.kwok_workdir.rglob("pids/kube-apiserver.pid"))
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="deployed")
        rollouts.patch("scorer", with_image(body, "scorer:v2", gpus=0))
        before = rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 10, what="canary 10")
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)  # the sandbox's own apiserver
            wait_until(lambda: not instance.components()["kube-apiserver"], what="apiserver down")
            assert not instance.status()["running"], "status reports the dead component"
            time.sleep(3)  # an outage long enough for the operator's watches and writes to fail
        finally:
            healed = instance.heal()
            # The controller-manager and the scheduler may lose their Leases and exit after the
            # apiserver is back: heal returns only once they lead again, restarting them if they died.
            assert healed[0] == "kube-apiserver" and set(healed) <= {
                "kube-apiserver", "kube-controller-manager", "kube-scheduler"}, healed
            assert all(instance.components().values()), instance.components()
        wait_until(lambda: instance.status()["running"], timeout=120, what="sandbox healed")
        done = rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed"
                                    and bool(s.get("previousStableRevision")), timeout=180, what="promoted")
    assert done["stableRevision"] == before["candidateRevision"]
    events = client.CoreV1Api(api_client).list_namespaced_event(namespace, field_selector="involvedObject.name=scorer")
    started = sorted(str(e.message) for e in events.items if e.reason == "StepStarted")
    assert started == ["step 1/2: canary", "step 2/2: canary"], started
    assert "Traceback" not in (tmp_path / "operator.log").read_text(errors="replace")
