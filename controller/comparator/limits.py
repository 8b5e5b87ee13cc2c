"""How much the comparator takes on: a token bucket (compared requests, posted labels)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` a second, in bursts of up to `rate` (at least 1)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self.capacity = max(rate, 1.0)
        self.tokens, self.at = self.capacity, clock()

    def take(self, count: int = 1) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= count:
            self.tokens -= count
            return True
        return False
