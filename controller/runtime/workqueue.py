"""A keyed work queue with deadlines, after client-go's rate-limited delaying queue.

- A key is queued at most once; a key added while it is being processed is
  processed again afterwards, never twice at once.
- `add_at(key, when)` requeues at a deadline (the engine's next step end,
  analysis tick or scale-down); an earlier deadline replaces a later one.
- `N` workers drain it: concurrency is bounded, whatever the number of keys.
- Failures requeue with capped exponential backoff per key, and one slow or
  failing key never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
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
    _ready: asyncio.Queue[K] = field(default_factory=asyncio.Queue)
    _queued: set[K] = field(default_factory=set)
    _active: set[K] = field(default_factory=set)
    _dirty: set[K] = field(default_factory=set)
    _heap: list[tuple[float, int, K]] = field(default_factory=list)
    _due: dict[K, float] = field(default_factory=dict)
    _failures: dict[K, int] = field(default_factory=dict)
    _tiebreak: itertools.count[int] = field(default_factory=itertools.count)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, key: K) -> None:
        """Process `key` as soon as a worker is free (once, however often it is added)."""
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_at(self, key: K, when: float) -> None:
        """Process `key` at monotonic time `when`; the earliest pending deadline of a key wins."""
        if when <= self.clock():
            self.add(key)
            return
        if key in self._due and self._due[key] <= when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._tiebreak), key))
        self._wakeup.set()

    def forget(self, key: K) -> None:
        """The object is gone: drop its deadline and failure count (queued work finds it gone)."""
        self._due.pop(key, None)
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
                    self.add(key)
            self._wakeup.clear()
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _work(self, handle: Callable[[K], Awaitable[None]]) -> None:
        while True:
            key = await self._ready.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await handle(key)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    async def run(self, handle: Callable[[K], Awaitable[None]], workers: int) -> None:
        """Drain the queue with `workers` concurrent handlers until cancelled.

        `handle` must not raise: it records its own failures (see `failed`).
        """
        async with asyncio.TaskGroup() as group:
            group.create_task(self._promote_due())
            for _ in range(workers):
                group.create_task(self._work(handle))
