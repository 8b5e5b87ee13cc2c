"""A keyed work queue with deadlines, after client-go's rate-limited delaying queue.

- A key is queued at most once; a key added while it is being processed is
  processed again afterwards, never twice at once.
- `add_at(key, when)` requeues at a deadline (the engine's next step end,
  analysis tick or scale-down); an earlier deadline replaces a later one.
- `N` workers drain it: concurrency is bounded, whatever the number of keys.
- Two lanes: urgent keys (a manual action, someone else's edit, a step's end) are taken before
  routine ones (analysis ticks), so an abort never waits behind a fleet's looks; a routine key
  added again as urgent moves to the urgent lane.
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
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, failures - 1)))


@dataclass
class WorkQueue(Generic[K]):
    clock: Callable[[], float] = time.monotonic
    backoff: Backoff = field(default_factory=Backoff)
    _urgent_lane: deque[K] = field(default_factory=deque)
    _routine_lane: deque[K] = field(default_factory=deque)
    # Entries waiting in the lanes (a stale one, left behind by a move to the urgent lane, is skipped).
    _entries: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    _queued: set[K] = field(default_factory=set)
    _urgent: set[K] = field(default_factory=set)
    _active: set[K] = field(default_factory=set)
    _dirty: set[K] = field(default_factory=set)
    _heap: list[tuple[float, int, K]] = field(default_factory=list)
    _due: dict[K, float] = field(default_factory=dict)
    _due_urgent: set[K] = field(default_factory=set)
    _failures: dict[K, int] = field(default_factory=dict)
    _tiebreak: itertools.count[int] = field(default_factory=itertools.count)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, key: K, urgent: bool = True) -> None:
        """Process `key` as soon as a worker is free (once, however often it is added); urgent keys first."""
        if key in self._active:
            self._dirty.add(key)
            if urgent:
                self._urgent.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._enter(key, urgent)
        elif urgent and key not in self._urgent:
            self._enter(key, urgent)  # Its routine entry stays behind, stale.

    def _enter(self, key: K, urgent: bool) -> None:
        if urgent:
            self._urgent.add(key)
        (self._urgent_lane if urgent else self._routine_lane).append(key)
        self._entries.release()

    def add_at(self, key: K, when: float, urgent: bool = True) -> None:
        """Process `key` at monotonic time `when`; the earliest pending deadline of a key wins."""
        if when <= self.clock():
            self.add(key, urgent)
            return
        if key in self._due and self._due[key] <= when:
            if self._due[key] == when and urgent:
                self._due_urgent.add(key)
            return
        self._due[key] = when
        if urgent:
            self._due_urgent.add(key)
        else:
            self._due_urgent.discard(key)
        heapq.heappush(self._heap, (when, next(self._tiebreak), key))
        self._wakeup.set()

    def forget(self, key: K) -> None:
        """The object is gone: drop its deadline and failure count (queued work finds it gone)."""
        self._due.pop(key, None)
        self._due_urgent.discard(key)
        self._failures.pop(key, None)

    def failed(self, key: K) -> float:
        """Record a failure of `key` and requeue it after its backoff; return the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self.backoff.delay(failures)
        self.add_at(key, self.clock() + delay)
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
                    urgent = key in self._due_urgent
                    self._due_urgent.discard(key)
                    self.add(key, urgent)
            self._wakeup.clear()
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _next(self) -> K:
        """The next key to process: the urgent lane first; stale entries are passed over."""
        while True:
            await self._entries.acquire()
            if self._urgent_lane:
                key = self._urgent_lane.popleft()
                self._urgent.discard(key)
            else:
                key = self._routine_lane.popleft()
                if key in self._urgent:
                    continue  # Moved to the urgent lane, and taken from there (or waiting there).
            if key in self._queued:
                return key

    async def _work(self, handle: Callable[[K], Awaitable[None]]) -> None:
        while True:
            key = await self._next()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await handle(key)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    urgent = key in self._urgent
                    self._urgent.discard(key)
                    self.add(key, urgent)

    async def run(self, handle: Callable[[K], Awaitable[None]], workers: int) -> None:
        """Drain the queue with `workers` concurrent handlers until cancelled.

        `handle` must not raise: it records its own failures (see `failed`).
        """
        async with asyncio.TaskGroup() as group:
            group.create_task(self._promote_due())
            for _ in range(workers):
                group.create_task(self._work(handle))
