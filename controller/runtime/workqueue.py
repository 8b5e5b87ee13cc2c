"""A keyed work queue with deadlines, after client-go's rate-limited delaying queue.

- A key is queued at most once; a key added while it is being processed is
  processed again afterwards, never twice at once.
- `add_at(key, when)` requeues at a deadline (the engine's next step end,
  analysis tick or scale-down); an earlier deadline replaces a later one.
- `N` workers drain it: concurrency is bounded, whatever the number of keys.
- Three lanes, taken in order: a manual action or a moment the engine promised (a step's end) first,
  then someone's edit (the rollout, its route), then routine work (analysis ticks, pods and
  Deployments moving). So an abort or a step's end never waits behind a fleet's looks or a burst of
  template changes; a key added again in a better lane moves up.
- Failures requeue with capped exponential backoff per key, and one slow or
  failing key never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, failures - 1)))


class Lane(IntEnum):
    """Where a key waits: lower lanes are taken first."""

    DUE = 0  # a manual action, or a moment the engine promised (a step's end, a re-check)
    CHANGE = 1  # someone's edit: the rollout or its route
    ROUTINE = 2  # analysis ticks; the rollout's pods and Deployments moving


@dataclass
class WorkQueue(Generic[K]):
    clock: Callable[[], float] = time.monotonic
    backoff: Backoff = field(default_factory=Backoff)
    _lanes: tuple[deque[K], ...] = field(default_factory=lambda: tuple(deque() for _ in Lane))
    # Entries waiting in the lanes (a stale one, left behind by a move to a better lane, is skipped).
    _entries: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    _queued: dict[K, Lane] = field(default_factory=dict)  # the best lane each queued key waits in
    _active: set[K] = field(default_factory=set)
    _dirty: dict[K, Lane] = field(default_factory=dict)  # added while active: again afterwards, in this lane
    _heap: list[tuple[float, int, K]] = field(default_factory=list)
    _due: dict[K, float] = field(default_factory=dict)
    _due_lane: dict[K, Lane] = field(default_factory=dict)
    _failures: dict[K, int] = field(default_factory=dict)
    _tiebreak: itertools.count[int] = field(default_factory=itertools.count)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, key: K, lane: Lane = Lane.CHANGE) -> None:
        """Process `key` as soon as a worker is free (once, however often it is added), lane by lane."""
        if key in self._active:
            self._dirty[key] = min(lane, self._dirty.get(key, lane))
        elif key not in self._queued or lane < self._queued[key]:
            self._queued[key] = lane  # An entry in a worse lane stays behind, stale.
            self._lanes[lane].append(key)
            self._entries.release()

    def add_at(self, key: K, when: float, lane: Lane = Lane.DUE) -> None:
        """Process `key` at monotonic time `when`; the earliest pending deadline of a key wins."""
        if when <= self.clock():
            self.add(key, lane)
            return
        if key in self._due and self._due[key] <= when:
            if self._due[key] == when:
                self._due_lane[key] = min(lane, self._due_lane[key])
            return
        self._due[key], self._due_lane[key] = when, lane
        heapq.heappush(self._heap, (when, next(self._tiebreak), key))
        self._wakeup.set()

    def forget(self, key: K) -> None:
        """The object is gone: drop its deadline and failure count (queued work finds it gone)."""
        self._due.pop(key, None)
        self._due_lane.pop(key, None)
        self._failures.pop(key, None)

    def failed(self, key: K) -> float:
        """Record a failure of `key` and requeue it after its backoff; return the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self.backoff.delay(failures)
        self.add_at(key, self.clock() + delay, Lane.CHANGE)
        return delay

    def succeeded(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def pending_deadline(self, key: K) -> float | None:
        return self._due.get(key)

    def __len__(self) -> int:
        return len(self._queued) + len(self._due)

    async def _promote_due(self) -> None:
        """Move keys whose deadline has come into the ready queue; sleep until the next one."""
        while True:
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._due.get(key) == when:
                    del self._due[key]
                    self.add(key, self._due_lane.pop(key))
            self._wakeup.clear()
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _next(self) -> K:
        """The next key to process: the best lane first; stale entries are passed over."""
        while True:
            await self._entries.acquire()
            lane = next(lane for lane in Lane if self._lanes[lane])
            key = self._lanes[lane].popleft()
            if self._queued.get(key) == lane:
                return key

    async def _work(self, handle: Callable[[K], Awaitable[None]]) -> None:
        while True:
            key = await self._next()
            del self._queued[key]
            self._active.add(key)
            try:
                await handle(key)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self.add(key, self._dirty.pop(key))

    async def run(self, handle: Callable[[K], Awaitable[None]], workers: int) -> None:
        """Drain the queue with `workers` concurrent handlers until cancelled.

        `handle` must not raise: it records its own failures (see `failed`).
        """
        async with asyncio.TaskGroup() as group:
            group.create_task(self._promote_due())
            for _ in range(workers):
                group.create_task(self._work(handle))
