"""The warm-up gate end to end: real model-server processes behind Envoy Gateway, their latency read by a
real Prometheus. A candidate that is never fast is rolled back without a single live request; a cold one
gets mirrored copies until it is warm, and only then its canary share. Envoy counts what it sent each
backend and each mirror (the servers cannot tell a mirrored copy there); the clients count the answers
a cold server gave them."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e.world import e2e_world
from kubernetes import client

from tests.integration.rollout_helpers import httproute_state

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

STEPS = [{"canary": {"weight": 30, "duration": "10m"}}]
REQUESTS, MIRROR = 20, 50
WARMUP = {"maxLatency": "500ms", "requests": REQUESTS, "mirrorPercent": MIRROR, "timeout": "25s"}


def test_no_live_request_reaches_a_candidate_before_it_is_warm(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    with e2e_world(api_client, namespace, kubeconfig, tmp_path) as world:
        first = world.deploy(STEPS, spec_extra={"strategy": {"steps": STEPS, "warmup": WARMUP}})

        # Never under 500 ms: mirrored copies for the whole timeout, then rolled back.
        world.roll_out("sluggish")
        slow = world.rollouts.wait_status("scorer", lambda s: (s.get("warmup", {}).get("latencyP95") or 0) > 0.5
                                          and s.get("phase") == "Progressing", 60, "a slow warm-up reading")
        sluggish = slow["candidateRevision"]
        assert world.gateway.mirrored("scorer") >= REQUESTS, world.gateway.counts()
        assert world.gateway.live("scorer-candidate") == 0, world.gateway.counts()
        assert slow["canaryWeight"] == 0 and slow["mirrorPercent"] == MIRROR
        failed = world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", 120,
                                            "WarmupFailed")
        rolled = next(c for c in failed["conditions"] if c["type"] == "RolledBack")
        assert rolled["reason"] == "WarmupFailed" and "limit 500ms" in rolled["message"], rolled
        assert failed["warmup"].get("passedAt") is None
        assert world.load.stats().total(sluggish) == 0, "no user was answered by it"
        assert httproute_state(world.rollouts, "scorer") == (0, 0)

        # Cold for its first 60 requests (1.5 s each), then fast: warm-up, then the canary.
        world.roll_out("cold")
        warm = world.rollouts.wait_status("scorer", lambda s: bool(s.get("warmup", {}).get("passedAt"))
                                          and s.get("canaryWeight") == 30, 120, "warm, then 30%")
        cold = warm["candidateRevision"]
        assert warm["stableRevision"] == first["stableRevision"]
        assert warm["warmup"]["latencyP95"] <= 0.5 and warm["warmup"]["requests"] >= REQUESTS
        # Its first 60 requests were answered cold, and no user had one of those answers: all were copies.
        served = world.fleet.served()[cold]
        assert served["cold_live"] + served["cold_mirrored"] == 60, served
        assert world.load.stats().cold.get(cold, 0) == 0, world.load.stats()
        world.rollouts.wait_status("scorer", lambda _: world.load.stats().total(cold, "ok") >= 20, 60,
                                   "users answered by the warm candidate")
