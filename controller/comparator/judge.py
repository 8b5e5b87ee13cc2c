"""`compare.judge`: the comparator asks a judge model which of the two answers to a compared prompt
is better, blind and in a random order (`judging`), and counts its preferences for the operator's
sign test (`analysis.compare_tests.judged_worse`).

The judge's load is bounded: `maxRequestsPerSecond` (a token bucket), a `budget` of calls in the
comparator's life (one per step: a step's rules start a new comparator), and at most
`MAX_IN_FLIGHT` calls at once; pairs beyond them are counted and not judged. A judge that errs,
times out or gives no verdict is counted by reason, never guessed. With `calibration`, each
verdict is filed under its request key, where a human preference posted later finds it
(`feedback`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from controller.comparator.judging import (
    DEFAULT_PROMPT,
    Position,
    Preference,
    Swap,
    judge_request,
    position,
    preference,
    question,
    reply_text,
    swap,
)
from controller.comparator.limits import TokenBucket

MAX_IN_FLIGHT = 32


@dataclass(frozen=True)
class JudgeConfig:
    url: str  # base URL: the comparator posts to <url>/v1/chat/completions
    model: str
    prompt: str = DEFAULT_PROMPT
    token: str = ""  # the judge's bearer token; empty: none is sent
    per_second: float = 2.0
    budget: int = 5000
    swap_percent: float = 10.0
    timeout_seconds: float = 30.0
    keep: int = 0  # judged pairs kept for `kubectl modelrollout diff --judged`, each way


class JudgeMetrics:
    def __init__(self, registry: CollectorRegistry, by: list[str], own: tuple[str, ...]) -> None:
        self.own = own
        self.judged = Counter("modelrollout_compare_judged", "Judged pairs by the model the judge preferred (the "
                              "first ask, in a random order)", [*by, "cell"], registry=registry)
        self.positions = Counter("modelrollout_compare_judge_positions", "Judge verdicts by the position chosen, "
                                 "every ask (first, second, tie): its position bias", [*by, "cell"], registry=registry)
        self.swaps = Counter("modelrollout_compare_judge_swaps", "Pairs asked again in the other order, by whether the "
                             "judge preferred the same model", [*by, "cell"], registry=registry)
        self.failures = Counter("modelrollout_compare_judge_failures", "Judge calls that gave no verdict, by reason",
                                [*by, "reason"], registry=registry)
        self.skipped = Counter("modelrollout_compare_judge_skipped", "Compared pairs not judged, by reason",
                               [*by, "reason"], registry=registry)
        for cell in Preference:
            self.judged.labels(*own, cell.value)


class Failed(Exception):
    """A judge call without a verdict; its reason is counted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Judge:
    def __init__(self, config: JudgeConfig, metrics: JudgeMetrics, seed: int | None = None,
                 on_judged: Callable[[str, Preference], None] | None = None) -> None:
        self.config, self.metrics, self.on_judged = config, metrics, on_judged
        self.bucket = TokenBucket(config.per_second)
        self.random = random.Random(seed)
        self.calls = 0
        self.in_flight: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        # The pairs kept for `diff --judged`, per preferred model: (sureness, when, pair), surest first.
        self.kept: dict[Preference, list[tuple[int, float, dict[str, Any]]]] = {
            Preference.CANDIDATE: [], Preference.STABLE: []}

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds))

    async def close(self) -> None:
        for task in list(self.in_flight):
            task.cancel()
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def offer(self, key: str | None, request: bytes, stable: str, candidate: str) -> None:
        """A compared pair both models answered: judge it in the background, or count why not."""
        asked = question(request)
        swapped = self.random.random() * 100 < self.config.swap_percent
        calls = 2 if swapped else 1
        reason = None
        if asked is None:
            reason = "no-question"
        elif self.calls + calls > self.config.budget:
            reason = "budget"
        elif len(self.in_flight) >= MAX_IN_FLIGHT:
            reason = "overloaded"
        elif not self.bucket.take(calls):
            reason = "rate-limited"
        if reason is not None or asked is None:
            self.metrics.skipped.labels(*self.metrics.own, reason or "no-question").inc()
            return
        self.calls += calls
        task = asyncio.create_task(self.judge(key, asked, stable, candidate, swapped))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def judge(self, key: str | None, asked: str, stable: str, candidate: str, swapped: bool) -> None:
        candidate_first = self.random.random() < 0.5
        found = await self.ask(asked, stable, candidate, candidate_first)
        if found is None:
            return
        own = self.metrics.own
        self.metrics.judged.labels(*own, found.value).inc()
        if key is not None and self.on_judged is not None:
            self.on_judged(key, found)
        sureness = 1
        if swapped:
            again = await self.ask(asked, stable, candidate, not candidate_first)
            if again is not None:
                agreed = swap(found, again)
                self.metrics.swaps.labels(*own, agreed.value).inc()
                sureness = 2 if agreed == Swap.CONSISTENT else 0
        self.keep(found, sureness, {"key": key, "question": asked, "stable": stable, "candidate": candidate,
                                    "preferred": found.value, "askedTwice": swapped,
                                    "consistent": sureness == 2 if swapped else None})

    async def ask(self, asked: str, stable: str, candidate: str, candidate_first: bool) -> Preference | None:
        """One call: the model the judge preferred, or None (its failure counted)."""
        first, second = (candidate, stable) if candidate_first else (stable, candidate)
        own = self.metrics.own
        try:
            chosen = await self.call(judge_request(self.config.model, self.config.prompt, asked, first, second))
        except Failed as failed:
            self.metrics.failures.labels(*own, failed.reason).inc()
            return None
        self.metrics.positions.labels(*own, chosen.value).inc()
        return preference(chosen, candidate_first)

    async def call(self, body: dict[str, Any]) -> Position:
        assert self.session is not None
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        try:
            async with self.session.post(self.config.url.rstrip("/") + "/v1/chat/completions", json=body,
                                         headers=headers) as response:
                if response.status >= 300:
                    raise Failed("status")
                raw = await response.content.read(1 << 20)
        except TimeoutError:
            raise Failed("timeout") from None
        except (aiohttp.ClientError, OSError):
            raise Failed("unreachable") from None
        text = reply_text(raw)
        chosen = position(text) if text is not None else None
        if chosen is None:
            raise Failed("no-verdict")
        return chosen

    def keep(self, preferred: Preference, sureness: int, pair: dict[str, Any]) -> None:
        """Keep the surest pairs each way (consistent under a swap first, then the newest)."""
        if not self.config.keep or preferred == Preference.TIE:
            return
        kept = self.kept[preferred]
        kept.append((sureness, time.time(), pair))
        kept.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
        del kept[self.config.keep:]

    def shown(self) -> dict[str, Any]:
        return {"kept": self.config.keep, "calls": self.calls, "budget": self.config.budget,
                **{p.value: [pair for _, _, pair in kept] for p, kept in self.kept.items()}}
