"""strategy.warmup: a Ready candidate gets mirrored copies only, until its latency says it is warm."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.analysis.readings import WarmupReading
from controller.api import ConditionType, Phase
from tests.unit.engine.world import World, deployed, make_spec

WARMUP: dict[str, Any] = {"maxLatency": "500ms", "requests": 20, "mirrorPercent": 10, "timeout": "2m"}


def _warming(**warmup: Any) -> World:
    spec = make_spec([{"canary": {"weight": 20, "duration": "1m"}}], warmup={**WARMUP, **warmup})
    world = deployed(World(spec))
    world.new_template("rev2")
    world.step()
    world.step()  # Ready: the warm-up begins.
    return world


def test_a_cold_candidate_gets_mirrored_copies_only_until_it_is_fast() -> None:
    world = _warming()
    assert world.route == (0, 10), "copies of 10% of live traffic; every answer still from the stable"
    assert world.status.warmup is not None and world.status.warmup.passed_at is None
    assert "WarmupStarted" in world.reasons()
    world.warmup = WarmupReading(requests=8, latency_p95=2.0)
    world.step(5)
    assert world.route == (0, 10) and world.status.message == "warming up: 8 of 20 warm-up requests so far"
    world.warmup = WarmupReading(requests=40, latency_p95=1.8)
    world.step(5)
    assert world.route == (0, 10)
    assert world.status.message == "warming up: p95 1800ms over 40 requests (limit 500ms)"
    assert world.status.warmup.latency_p95 == 1.8 and world.status.step_started_at is None
    world.warmup = WarmupReading(requests=60, latency_p95=0.09)
    world.step(5)
    assert world.route == (20, 0), "warm: the first step starts at once"
    assert world.status.warmup.passed_at is not None and "WarmupPassed" in world.reasons()
    world.warmup = WarmupReading(requests=60, latency_p95=3.0)
    world.step(5)
    assert world.route == (20, 0), "the gate is passed once; guardrails watch the rest"


def test_a_candidate_never_warm_is_rolled_back_without_a_live_request() -> None:
    world = _warming()
    world.warmup = WarmupReading(requests=60, latency_p95=0.9)
    world.step(119)
    assert world.status.phase == Phase.PROGRESSING and world.route == (0, 10)
    world.step(1)
    assert world.status.phase == Phase.ROLLED_BACK and world.route == (0, 0)
    rolled = next(c for c in world.status.conditions if c.type == ConditionType.ROLLED_BACK.value)
    assert rolled.reason == "WarmupFailed"
    assert rolled.message == "not warm within 2m: p95 900ms over 60 requests (limit 500ms)"
    assert world.deployments["rev2"] == 0


def test_a_failed_reading_never_passes() -> None:
    world = _warming()
    world.warmup = WarmupReading(error="Prometheus unreachable")
    world.step(30)
    assert world.route == (0, 10) and world.status.message == "warming up: no reading: Prometheus unreachable"


def test_a_retry_warms_up_again() -> None:
    world = _warming(timeout="10s")
    world.step(10)
    assert world.status.phase == Phase.ROLLED_BACK
    world.act("retry")
    world.step()
    assert world.route == (0, 10) and world.status.warmup is not None and world.status.warmup.passed_at is None


def test_warmup_needs_a_route_that_can_mirror() -> None:
    with pytest.raises(ValidationError, match=r"trafficRouting\.replicas cannot do"):
        make_spec([{"canary": {"weight": 20, "duration": "1m"}}], routing="replicas", warmup=WARMUP)
