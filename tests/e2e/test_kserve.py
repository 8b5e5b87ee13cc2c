"""A real KServe Python model server (PyPI `kserve` 0.21), which counts no failures, rolled back on the
errors Envoy counted.

Each pod runs KServe's `ModelServer` on its pod's address. The candidate's model raises on 30% of the
inputs (a last feature under -0.5244, the 30% quantile of a standard normal): KServe answers those with
HTTP 500 and counts nothing of them. With `gatewayProfile: envoy` the error-rate guardrail reads Envoy
Gateway's per-backend counters instead, and rolls the canary back. Without it the same rollout would
carry the ErrorsUnwatched condition and be promoted.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from e2e.harness import httproute_state
from e2e.real_servers import KServeRecipe
from e2e.world import e2e_world
from kubernetes import client

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

FAILS_BELOW = -0.5244  # P(N(0, 1) < -0.5244) = 0.30


def payload(rng: random.Random) -> dict[str, Any]:
    return {"instances": [[round(rng.gauss(0, 1), 4) for _ in range(4)]]}


def test_a_kserve_candidate_failing_30_percent_is_rolled_back_on_envoys_counts(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    recipe = KServeRecipe({"scorer:ks-good": float("-inf"), "scorer:ks-bad": FAILS_BELOW}, "scorer").prepare()
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=30, recipe_for_image=recipe.for_image,
                   load_path="/v1/models/scorer:predict", payload=payload) as world:
        first = world.deploy([{"canary": {"weight": 20, "duration": "10m"}}], image="scorer:ks-good",
                             profile="kserve", gatewayProfile="envoy", guardrails=[
                                 {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.05}])
        assert not any(c["type"] == "ErrorsUnwatched" and c["status"] == "True"
                       for c in world.status().get("conditions", [])), "the gateway counts the errors"
        world.roll_out("ks-bad")
        def decided(status: dict[str, Any]) -> bool:
            promoted = status.get("phase") == "Completed" and status.get("stableRevision") != first["stableRevision"]
            return promoted or status.get("phase") == "RolledBack"

        done = world.rollouts.wait_status("scorer", decided, 600, "a verdict on the failing model",
                                          progress=world.fleet.activity)
        assert done["phase"] == "RolledBack", done.get("message")
        assert done["stableRevision"] == first["stableRevision"]
        assert httproute_state(world.rollouts, "scorer") == (0, 0)
        breached = [d for d in done["decisions"] if d["verdict"] == "breach: rollback"]
        assert [d["test"] for d in breached] == ["guardrail error-rate"], done["decisions"]
        # The users saw the candidate's failures as Envoy did: HTTP 500s from the candidate's server.
        stats = world.load.stats()
        assert stats.total(outcome="error") > 0, stats
