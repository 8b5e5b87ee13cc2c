"""A real model server we did not write: MLServer 1.7.1 (PyPI) serving scikit-learn models.

Each pod's MLServer listens on its pod's address; Envoy Gateway serves the operator's HTTPRoute;
Prometheus scrapes MLServer's own metrics; the analysis reads them through the `mlserver` profile.
- A worse candidate (a random forest, slower as a bigger model is, trained on labels with 30%
  flipped, behind an input check that raises on a negative last feature, which 10% of the requests
  have: the model fails them itself, the server is not modified) is rolled back on its real errors.
- A retrained candidate of the same kind (another seed) goes through a shadow step, whose copies
  Envoy mirrors fire-and-forget, and a canary, and is promoted.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.harness import httproute_state, wait_until
from e2e.real_servers import MLServerRecipe, ModelVersion
from e2e.world import e2e_world
from kubernetes import client

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

MODELS = {
    "scorer:mls-good": ModelVersion("scorer"),
    "scorer:mls-worse": ModelVersion("scorer", flip=0.3, reject_negative=True, trees=300),
    "scorer:mls-retrained": ModelVersion("scorer", seed=2),
}
NEGATIVE_SHARE = 0.10


def payload(rng: random.Random) -> dict[str, Any]:
    """One row of four features in MLServer's V2 protocol; the last one is negative in 10% of rows."""
    row = [round(rng.gauss(0, 1), 4) for _ in range(3)]
    last = abs(rng.gauss(0, 1))
    row.append(round(-last if rng.random() < NEGATIVE_SHARE else last, 4))
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": row}]}


def _query(url: str, promql: str) -> float:
    result = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_a_worse_mlserver_model_is_rolled_back_on_its_own_errors(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    recipe = MLServerRecipe(MODELS, "scorer").prepare(tmp_path / "trained")
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=30, recipe_for_image=recipe.for_image,
                   load_path="/v2/models/scorer/infer", payload=payload) as world:
        steps = [{"shadow": {"percent": 50, "duration": "2m"}}, {"canary": {"weight": 20, "duration": "5m"}}]
        first = world.deploy(steps, image="scorer:mls-good", profile="mlserver", guardrails=[
            {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.01},
            {"name": "p99-latency", "template": "latencyP99", "relativeToStable": 2},
        ])
        world.roll_out("mls-worse")
        def decided(status: dict[str, Any]) -> bool:
            promoted = status.get("phase") == "Completed" and status.get("stableRevision") != first["stableRevision"]
            return promoted or status.get("phase") == "RolledBack"

        done = world.rollouts.wait_status("scorer", decided, 420, "a verdict on the worse model")
        assert done["phase"] == "RolledBack", done.get("message")
        assert done["stableRevision"] == first["stableRevision"]
        assert httproute_state(world.rollouts, "scorer") == (0, 0)
        # Its own failures or its latency (a forest of 300 trees is slower than a logistic regression),
        # whichever test reaches its evidence first.
        breached = {d["test"] for d in done["decisions"] if d["verdict"] == "breach: rollback"}
        assert breached and breached <= {"guardrail error-rate", "guardrail p99-latency"}, done["decisions"]

        # The evidence was MLServer's own: its failure counter, under the candidate's relabelled version.
        # Read over the last minutes: the rolled-back candidate's pods are gone, and their series went stale
        # the moment their scrape targets did (a busy CI run saw an instant query return nothing).
        candidate = done["candidateRevision"]
        assert _query(world.prometheus.url,
                      f'sum(max_over_time(model_infer_request_failure_total{{version="{candidate}"}}[15m]))') > 0
        stable_failures = _query(world.prometheus.url,
                                 f'sum(model_infer_request_failure_total{{version="{first["stableRevision"]}"}})')
        assert stable_failures == 0, "the stable has no input check: it never fails"


def test_a_retrained_mlserver_model_is_shadowed_and_promoted_through_envoy(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    recipe = MLServerRecipe(MODELS, "scorer").prepare(tmp_path / "trained")
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=30, recipe_for_image=recipe.for_image,
                   load_path="/v2/models/scorer/infer", payload=payload) as world:
        steps = [{"shadow": {"percent": 50, "duration": "45s"}}, {"canary": {"weight": 20, "duration": "45s"}}]
        first = world.deploy(steps, image="scorer:mls-good", profile="mlserver", guardrails=[
            {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.01},
        ])
        world.roll_out("mls-retrained")
        world.rollouts.wait_status("scorer", lambda s: s.get("mirrorPercent") == 50, 300, "the shadow step")
        # Envoy's copies, counted by Envoy: the servers cannot tell them from live requests.
        wait_until(lambda: world.gateway.mirrored("scorer") >= 50, 300, "mirrored copies",
                   progress=lambda: world.gateway.mirrored("scorer"))
        done = world.rollouts.wait_status(
            "scorer", lambda s: s.get("phase") == "RolledBack"
            or (s.get("phase") == "Completed" and s.get("stableRevision") != first["stableRevision"]),
            600, "a verdict on the retrained model", progress=world.fleet.activity)
        assert done["phase"] == "Completed", done.get("message")
        assert httproute_state(world.rollouts, "scorer") == (0, 0)
        promoted = done["stableRevision"]
        assert _query(world.prometheus.url,
                      f'sum(max_over_time(model_infer_request_success_total{{version="{promoted}"}}[15m]))') > 0
