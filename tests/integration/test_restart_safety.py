"""SIGKILL the operator in the middle of a step and start it again: the same step, the same traffic."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.rollout_helpers import (
    Rollouts,
    httproute,
    httproute_state,
    operator_process,
    rollout_body,
    with_image,
)

pytestmark = pytest.mark.cluster

CASES: dict[str, tuple[list[dict[str, Any]], tuple[int, int], str]] = {
    "shadow": ([{"shadow": {"percent": 40, "duration": "1h"}}, {"canary": {"weight": 50, "duration": "1h"}}],
               (0, 40), "Progressing"),
    "canary": ([{"canary": {"weight": 30, "duration": "1h"}}, {"canary": {"weight": 60, "duration": "1h"}}],
               (30, 0), "Progressing"),
    "paused": ([{"canary": {"weight": 15, "duration": "1s"}}, {"pause": {}},
                {"canary": {"weight": 50, "duration": "1h"}}], (15, 0), "Paused"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_sigkill_mid_step_resumes_the_same_step_with_the_same_weights(
    kind: str, api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path,
    crd_installed: None,
) -> None:
    steps, route, phase = CASES[kind]
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    body = rollout_body("scorer", steps, {"gatewayAPI": {"httpRoute": "scorer"}})
    log = tmp_path / "operator.log"
    with operator_process(kubeconfig, namespace, log) as first:
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="deployed")
        rollouts.patch("scorer", with_image(body, "scorer:v2"))
        before = rollouts.wait_status(
            "scorer", lambda s: (s.get("canaryWeight"), s.get("mirrorPercent")) == route and s.get("phase") == phase,
            what=f"{kind} step",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert httproute_state(rollouts, "scorer") == route, "nothing moves while the operator is down"

    with operator_process(kubeconfig, namespace, log):
        # The restarted operator has reconciled this rollout once it answers: then nothing may have moved.
        rollouts.ping("scorer")
        after = rollouts.status("scorer")
    assert after["currentStep"] == before["currentStep"], "no step skipped or redone"
    assert after["stepStartedAt"] == before["stepStartedAt"], "the step's clock was not restarted"
    assert after["phase"] == phase
    assert (after["canaryWeight"], after["mirrorPercent"]) == route
    assert httproute_state(rollouts, "scorer") == route
    assert after["candidateRevision"] == before["candidateRevision"]
