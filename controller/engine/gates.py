"""What a candidate waits for before its first step: free GPUs (strategy.capacity) and a warm-up
(strategy.warmup). Each holds the rollout while it waits, and gives up through `states.fire`.
"""

from __future__ import annotations

from controller.analysis.readings import WarmupReading
from controller.api import ConditionType, EventReason, WarmupStatus
from controller.durations import parse_duration
from controller.engine.draft import CAPACITY_RECHECK, WARMUP_RECHECK, Draft
from controller.engine.observations import Observations
from controller.engine.states import Event, fire
from controller.timestamps import format_timestamp, parse_timestamp


def await_capacity(draft: Draft, observations: Observations) -> bool:
    """Hold the rollout, before its candidate exists, while its GPUs are not free (True: holding).

    Nothing else changes meanwhile: the candidate is not created and all traffic stays on the stable.
    `wait` gives up after its timeout; `surge` waits as long as it takes."""
    shortfall, capacity = observations.capacity_shortfall, draft.spec.strategy.capacity
    waiting_since = draft.s.capacity_wait_since
    if shortfall is None:
        if waiting_since is not None:
            draft.set(capacity_wait_since=None)
            draft.condition(ConditionType.INSUFFICIENT_CAPACITY, False, "CapacityAvailable")
            draft.event(EventReason.CAPACITY_AVAILABLE, "the candidate's resources are free: creating it")
        return False
    if waiting_since is None:
        draft.set(capacity_wait_since=format_timestamp(draft.now))
        draft.event(EventReason.INSUFFICIENT_CAPACITY, f"candidate {draft.candidate} not created: {shortfall}",
                    warning=True)
    draft.condition(ConditionType.INSUFFICIENT_CAPACITY, True, "InsufficientCapacity", shortfall)
    since = parse_timestamp(waiting_since) if waiting_since else draft.now
    if capacity.policy == "wait" and (draft.now - since).total_seconds() >= parse_duration(capacity.timeout):
        draft.set(capacity_wait_since=None)
        fire(draft, Event.CAPACITY_TIMEOUT, f"no capacity for the candidate within {capacity.timeout}: {shortfall}")
        return True
    draft.set(message=f"waiting for capacity: {shortfall}")
    draft.wake(draft.now + CAPACITY_RECHECK)
    return True


def warming_up(draft: Draft, reading: WarmupReading | None) -> bool:
    """Before the first step, with strategy.warmup: mirrored requests only, until the candidate's p95 latency
    over them is under maxLatency (True: still warming up, or rolled back for it)."""
    warmup, state = draft.spec.strategy.warmup, draft.s.warmup
    if warmup is None or draft.s.current_step > 0 or draft.s.step_started_at is not None or (
            state is not None and state.passed_at is not None):
        return False
    if state is None:
        state = WarmupStatus(started_at=format_timestamp(draft.now))
        draft.event(EventReason.WARMUP_STARTED, f"mirroring {warmup.mirror_percent}% of live traffic to "
                    f"{draft.candidate} until its p95 latency is under {warmup.max_latency}")
    detail = _warmup_detail(warmup.requests, warmup.max_latency, reading)
    read = {"requests": reading.requests, "latency_p95": reading.latency_p95} if reading is not None else {}
    state = state.model_copy(update={**read, "message": detail})
    if reading is not None and reading.requests >= warmup.requests and reading.latency_p95 is not None \
            and reading.latency_p95 <= parse_duration(warmup.max_latency):
        draft.set(warmup=state.model_copy(update={"passed_at": format_timestamp(draft.now)}))
        draft.event(EventReason.WARMUP_PASSED, f"candidate {draft.candidate} is warm: {detail}")
        return False
    draft.set(warmup=state)
    if (draft.now - parse_timestamp(state.started_at)).total_seconds() >= parse_duration(warmup.timeout):
        fire(draft, Event.WARMUP_FAILED, f"not warm within {warmup.timeout}: {detail}")
        return True
    draft.route(0, warmup.mirror_percent)
    draft.set(message=f"warming up: {detail}")
    draft.wake(draft.now + WARMUP_RECHECK)
    return True


def _warmup_detail(needed: int, limit: str, reading: WarmupReading | None) -> str:
    if reading is None:
        return "no reading yet"
    if reading.error is not None:
        return f"no reading: {reading.error}"
    if reading.requests < needed:
        return f"{reading.requests:.0f} of {needed} warm-up requests so far"
    if reading.latency_p95 is None:
        return f"no p95 yet over {reading.requests:.0f} requests"
    return f"p95 {reading.latency_p95 * 1000:.0f}ms over {reading.requests:.0f} requests (limit {limit})"
