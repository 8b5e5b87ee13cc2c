"""End-to-end scenarios: real model-server processes, real Prometheus scraping them every second,
the operator deciding by itself from the metrics, and load routed by the live HTTPRoute."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from devkit.sandbox.prometheus import start_prometheus
from e2e.harness import wait_until
from e2e.world import e2e_world
from kubernetes import client

from tests.integration.rollout_helpers import httproute_state

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]


def test_a_good_candidate_is_promoted_through_shadow_canary_and_ab(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    steps = [
        {"shadow": {"percent": 100, "duration": "8s"}},
        {"canary": {"weight": 20, "duration": "8s"}},
        {"abTest": {"weight": 50, "maxDuration": "4m", "minDuration": "4s", "metric": "conversion",
                    "minimumDetectableEffect": 0.05, "onInconclusive": "pause"}},
    ]
    with e2e_world(api_client, namespace, kubeconfig, tmp_path) as world:
        first = world.deploy(steps, guardrails=[
            {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.05, "failureLimit": 1},
            {"name": "drift", "template": "predictionPSI", "max": 0.5, "during": ["shadow"]},
        ])
        world.roll_out("better")
        shadow = world.rollouts.wait_status("scorer", lambda s: s.get("mirrorPercent") == 100
                                            and "guardrails" in s.get("analysis", {}), 90, "shadow analysed")
        drift = shadow["analysis"]["guardrails"]["drift"]
        assert drift["outcome"] in ("Passed", "NoData"), drift
        # Shadow traffic really reaches the candidate. Envoy counts the copies in the mirror's own cluster,
        # which goes with the mirror at the step's end: read it now.
        wait_until(lambda: world.gateway.mirrored("scorer") > 0, 60, "Envoy mirroring to the candidate")
        def settled(status: dict[str, Any]) -> bool:
            inconclusive = status.get("phase") == "Paused" and status.get("verdict") == "Inconclusive"
            return status.get("phase") in ("Completed", "RolledBack") or inconclusive

        # A verdict comes as fast as the servers serve: a busy machine is slower, not stuck.
        done = world.rollouts.wait_status("scorer", settled, 900, "an A/B verdict", progress=world.fleet.activity)
        assert done["phase"] == "Completed", done.get("message")
        assert done["stableRevision"] != first["stableRevision"]
        assert done["verdict"] == "CandidateBetter", done
        ab = [d for d in done["decisions"] if d["test"] == "anytime-valid split test"]
        assert ab and ab[-1]["verdict"] == "CandidateBetter" and ab[-1]["effect"] > 0
        assert ab[-1]["pValue"] <= 0.025, "CandidateBetter is one side of a test at alpha / 2"


def test_an_error_spike_mid_canary_rolls_back_by_itself(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    with e2e_world(api_client, namespace, kubeconfig, tmp_path) as world:
        world.deploy([{"canary": {"weight": 30, "duration": "10m"}}])
        world.roll_out("good-rebuild")
        status = world.rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 30
                                            and s.get("analysis", {}).get("verdict") == "Pass", 90, "healthy canary")
        # Two more analysis runs, both passing: a healthy canary is measured, and not rolled back.
        first_run = status["analysis"]["lastRun"]
        world.rollouts.wait_status("scorer", lambda s: s.get("analysis", {}).get("lastRun", "") > first_run, 60,
                                   "another analysis run")
        assert world.status()["phase"] == "Progressing", "a healthy canary is not rolled back"
        world.fleet.set_knobs(status["candidateRevision"], error_rate=0.4)
        broke = time.monotonic()
        wait_until(lambda: httproute_state(world.rollouts, "scorer") == (0, 0), 60, "automatic rollback")
        took = time.monotonic() - broke
        # The route is written first, then the status that records it.
        final = world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", 30, "RolledBack")
        rolled = next(c for c in final["conditions"] if c["type"] == "RolledBack")
        assert rolled["reason"] == "AnalysisFailed" and "error-rate" in rolled["message"]
        assert any(d["test"] == "guardrail error-rate" for d in final["decisions"])
        print(f"fault to 100% stable: {took:.1f} s")


def test_a_candidate_with_40_percent_slower_p99_fails_the_relative_guardrail(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    with e2e_world(api_client, namespace, kubeconfig, tmp_path) as world:
        world.deploy([{"canary": {"weight": 40, "duration": "10m"}}])
        world.roll_out("slow")
        final = world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", 600,
                                           "latency rollback", progress=world.fleet.activity)
        rolled = next(c for c in final["conditions"] if c["type"] == "RolledBack")
        assert "p99-latency" in rolled["message"] and "slow requests" in rolled["message"]
        guard = final["analysis"]["guardrails"]["p99-latency"]
        assert guard["outcome"] == "Breached" and guard["slowAbove"][1] > guard["slowAbove"][0]
        assert final["analysis"]["decidedBy"] == "p99-latency"
        assert httproute_state(world.rollouts, "scorer") == (0, 0)


def test_a_prometheus_outage_pauses_and_never_promotes(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    with e2e_world(api_client, namespace, kubeconfig, tmp_path) as world:
        first = world.deploy([{"canary": {"weight": 20, "duration": "20s"}}])
        world.roll_out("good-rebuild")
        world.rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 20
                                   and s.get("analysis", {}).get("verdict") == "Pass", 90, "measured canary")
        port = world.prometheus.port
        world.prometheus.stop()
        paused = world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "Paused", 60, "pause on outage")
        condition = next(c for c in paused["conditions"] if c["type"] == "Paused")
        assert condition["reason"] == "AnalysisError"
        # Past the step's end, and the operator still trying to measure: without measurements it must not promote.
        held = world.rollouts.wait_status(
            "scorer", lambda s: s.get("analysis", {}).get("lastRun", "") > (s.get("stepEndsAt") or "~"), 90,
            "an analysis attempt after the step's end")
        assert held["phase"] == "Paused" and held["stableRevision"] == first["stableRevision"]
        assert httproute_state(world.rollouts, "scorer") == (20, 0)

        world.prometheus = start_prometheus(tmp_path / "prometheus", [world.fleet.scrape_config(),
                                                                      world.gateway.scrape_config()],
                                            port=port, scrape_interval="1s")
        done = world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", 600, "recovered",
                                          progress=world.fleet.activity)
        assert done["stableRevision"] != first["stableRevision"]
