"""The work queue: dedupe, no concurrent runs of one key, deadlines, bounded workers, backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from controller.runtime.workqueue import Backoff, Lane, WorkQueue


@contextlib.asynccontextmanager
async def running(queue: WorkQueue[str], handle: Callable[[str], Awaitable[None]],
                  workers: int = 2) -> AsyncIterator[None]:
    task = asyncio.create_task(queue.run(handle, workers))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(predicate: Callable[[], bool]) -> None:
    """Wait on a condition, bounded: 5,000 turns of the event loop, then fail."""
    for _ in range(5000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


async def test_a_key_added_many_times_runs_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen: list[str] = []

    async def handle(key: str) -> None:
        seen.append(key)

    for _ in range(100):
        queue.add("a")
    queue.add("b")
    async with running(queue, handle):
        await until(lambda: len(seen) == 2)
        await asyncio.sleep(0.05)
    assert sorted(seen) == ["a", "b"]


async def test_a_key_added_while_running_runs_again_after_never_beside() -> None:
    queue: WorkQueue[str] = WorkQueue()
    active = 0
    most = 0
    runs = 0
    release = asyncio.Event()

    async def handle(key: str) -> None:
        nonlocal active, most, runs
        active += 1
        most = max(most, active)
        runs += 1
        if runs == 1:
            await release.wait()
        active -= 1

    queue.add("a")
    async with running(queue, handle, workers=4):
        await until(lambda: runs == 1)
        queue.add("a")
        queue.add("a")
        await asyncio.sleep(0.02)
        assert runs == 1, "never two runs of one key at once"
        release.set()
        await until(lambda: runs == 2)
    assert most == 1


async def test_concurrency_is_bounded_by_workers() -> None:
    queue: WorkQueue[int] = WorkQueue()
    active = 0
    most = 0
    done = 0

    async def handle(key: int) -> None:
        nonlocal active, most, done
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.005)
        active -= 1
        done += 1

    for key in range(50):
        queue.add(key)
    async with running(queue, handle, workers=3):  # type: ignore[arg-type]
        await until(lambda: done == 50)
    assert most == 3


async def test_deadlines_fire_in_order_and_the_earliest_wins() -> None:
    now = [0.0]
    queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    seen: list[str] = []

    async def handle(key: str) -> None:
        seen.append(key)

    queue.add_at("late", 10.0)
    queue.add_at("early", 5.0)
    queue.add_at("late", 20.0)  # later than the pending one: ignored
    async with running(queue, handle):
        await asyncio.sleep(0.02)
        assert seen == []
        now[0] = 6.0
        queue.add_at("other", 100.0)  # any add_at wakes the timer to look again
        await until(lambda: seen == ["early"])
        now[0] = 11.0
        queue.add_at("another", 100.0)
        await until(lambda: seen == ["early", "late"])


async def test_failures_back_off_exponentially_with_a_cap_and_reset_on_success() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=lambda: 0.0, backoff=Backoff(base=1.0, cap=8.0))
    delays = [queue.failed("a") for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    queue.succeeded("a")
    assert queue.failed("a") == 1.0
    assert queue.failed("b") == 1.0, "one key's failures never slow another"


async def test_a_slow_key_does_not_delay_the_others() -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen, stuck, handle = _busy_until_gate("slow")
    queue.add("slow")
    for key in "abc":
        queue.add(key)
    async with running(queue, handle, workers=2):
        await until(lambda: seen == ["a", "b", "c"])
        stuck.set()
        await until(lambda: "slow" in seen)


async def test_urgent_keys_go_ahead_of_routine_ones_and_a_routine_key_made_urgent_moves_up() -> None:
    """1,000 analysis ticks are queued; an abort added last is taken next, and so is a ticking key
    whose route someone edited. Each runs once."""
    queue: WorkQueue[str] = WorkQueue()
    seen, gate, handle = _busy_until_gate()

    queue.add("busy")
    async with running(queue, handle, workers=1):
        await until(lambda: len(queue) == 0)  # the one worker holds "busy"
        for number in range(1000):
            queue.add(f"tick-{number}", Lane.ROUTINE)
        queue.add("abort")
        queue.add("tick-500")  # routine before, urgent now
        gate.set()
        await until(lambda: len(seen) == 1002)
    assert seen[:3] == ["busy", "abort", "tick-500"]
    assert len(set(seen)) == len(seen), "no key ran twice"
    assert seen[3:6] == ["tick-0", "tick-1", "tick-2"], "routine keys keep their order"


async def test_a_deadline_keeps_its_lane_and_an_urgent_ask_at_the_same_time_wins() -> None:
    now = [0.0]
    queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    seen, gate, handle = _busy_until_gate()

    queue.add_at("tick", 5.0, Lane.ROUTINE)
    queue.add_at("step-end", 5.0)
    queue.add_at("also-tick", 5.0, Lane.ROUTINE)
    queue.add_at("also-tick", 5.0)  # the same deadline asked again, urgently
    queue.add("busy")
    async with running(queue, handle, workers=1):
        await until(lambda: len(queue) == 3)  # the worker holds "busy"; three deadlines wait
        now[0] = 6.0
        queue.add_at("later", 100.0)  # wakes the timer
        await until(lambda: all(queue.pending_deadline(key) is None for key in ("tick", "step-end", "also-tick")))
        gate.set()
        await until(lambda: len(seen) == 4)
    assert seen == ["busy", "step-end", "also-tick", "tick"]


async def test_a_key_asked_for_urgently_while_it_runs_runs_again_urgently() -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen: list[str] = []
    gate = asyncio.Event()

    async def handle(key: str) -> None:
        if key == "a" and not seen:
            await gate.wait()
        seen.append(key)

    queue.add("a")
    async with running(queue, handle, workers=1):
        await until(lambda: len(queue) == 0)
        queue.add("b", Lane.ROUTINE)
        queue.add("a")  # while it runs: again afterwards, urgently
        gate.set()
        await until(lambda: len(seen) == 3)
    assert seen == ["a", "a", "b"]


async def test_a_step_end_and_an_abort_go_ahead_of_a_burst_of_edits() -> None:
    """100 template changes are queued; a step's end comes due and an abort arrives: both are taken
    next, ahead of the edits, which keep their order ahead of the analysis ticks."""
    now = [0.0]
    queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    seen, gate, handle = _busy_until_gate()

    queue.add_at("step-end", 5.0)
    queue.add("busy")
    async with running(queue, handle, workers=1):
        await until(lambda: len(queue) == 1)  # the worker holds "busy"
        queue.add("tick", Lane.ROUTINE)
        for number in range(100):
            queue.add(f"edit-{number}")
        now[0] = 6.0
        queue.add_at("later", 100.0)  # wakes the timer
        await until(lambda: queue.pending_deadline("step-end") is None)
        queue.add("abort", Lane.DUE)
        gate.set()
        await until(lambda: len(seen) == 104)
    assert seen[:3] == ["busy", "step-end", "abort"]
    assert seen[3:5] == ["edit-0", "edit-1"] and seen[-1] == "tick"


def _busy_until_gate(busy: str = "busy") -> tuple[list[str], asyncio.Event, Callable[[str], Awaitable[None]]]:
    """A handler that records each key in order, holding its worker on `busy` until the gate opens."""
    seen: list[str] = []
    gate = asyncio.Event()

    async def handle(key: str) -> None:
        if key == busy:
            await gate.wait()
        seen.append(key)

    return seen, gate, handle
