"""Prometheus over its HTTP API (`/api/v1/query`), on httpx's async client.

Queries run on the operator's event loop with a per-Prometheus semaphore, so
one slow Prometheus holds at most `MAX_CONCURRENT_QUERIES` of them and never a
thread. The analysis itself is synchronous code in a reconcile worker: it
waits for each query with the run's deadline, and gives up at once when the
runtime interrupts it (a manual action arrived: an abort never waits on analysis).

A built-in template's answer is shared (`SharedAnswers`): one evaluation, grouped by arm, serves
every rollout on that Prometheus that looks while it is fresh enough, so the queries a fleet costs
do not grow with the number of rollouts.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from controller.analysis.readings import MetricError

QUERY_TIMEOUT_SECONDS = 5.0
MAX_CONCURRENT_QUERIES = 8
# An answer this large is parsed off the event loop.
LARGE_ANSWER_BYTES = 256 * 1024
# How often a waiting worker checks for an interrupt.
_POLL_SECONDS = 0.05
_T = TypeVar("_T")
# An answer by arm (the values of the grouping labels), then by part (a label such as `le`, or "").
Grouped = dict[tuple[str, ...], dict[str, float]]


class AnalysisInterrupted(RuntimeError):
    """A manual action arrived while the analysis ran: its result is not wanted any more."""


@dataclass(frozen=True)
class Credentials:
    """From the Secret named by `analysis.prometheus.secretRef`."""

    token: str = ""
    username: str = ""
    password: str = ""
    ca_pem: str = ""

    @classmethod
    def from_secret(cls, data: dict[str, str]) -> Credentials:
        return cls(data.get("token", ""), data.get("username", ""), data.get("password", ""), data.get("ca.crt", ""))


class PrometheusPool:
    """One async client and one semaphore per (address, credentials), living on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._clients: dict[tuple[str, Credentials], tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}

    def _client(self, address: str, credentials: Credentials) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        key = (address, credentials)
        if key not in self._clients:
            headers = {"Authorization": f"Bearer {credentials.token}"} if credentials.token else None
            auth = httpx.BasicAuth(credentials.username, credentials.password) if credentials.username else None
            verify: ssl.SSLContext | bool = (
                ssl.create_default_context(cadata=credentials.ca_pem) if credentials.ca_pem else True
            )
            client = httpx.AsyncClient(base_url=address, headers=headers, auth=auth, verify=verify)
            self._clients[key] = (client, asyncio.Semaphore(MAX_CONCURRENT_QUERIES))
        return self._clients[key]

    async def query(self, address: str, credentials: Credentials, promql: str,
                    time_limit: float) -> list[dict[str, Any]]:
        client, slots = self._client(address, credentials)
        async with slots:
            try:
                response = await client.get("/api/v1/query", params={"query": promql}, timeout=time_limit)
                response.raise_for_status()
                # A fleet's answer is megabytes: parsed on the event loop, it would hold up every watch
                # event and manual action behind it.
                payload = (await asyncio.to_thread(response.json) if len(response.content) > LARGE_ANSWER_BYTES
                           else response.json())
            except httpx.HTTPStatusError as error:
                # Not the error's text: it carries the whole URL-encoded query.
                raise MetricError(f"prometheus answered HTTP {error.response.status_code}") from error
            except (httpx.HTTPError, ValueError) as error:
                raise MetricError(f"prometheus query failed: {type(error).__name__}") from error
        if payload.get("status") != "success":
            raise MetricError(f"prometheus query failed: {payload.get('error', 'unknown error')}"[:300])
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result

    async def close(self) -> None:
        for client, _ in self._clients.values():
            await client.aclose()
        self._clients.clear()


class PrometheusProvider:
    """The MetricProvider of one analysis run: every query shares the run's deadline."""

    def __init__(self, pool: PrometheusPool, address: str, credentials: Credentials, deadline: float,
                 interrupted: Callable[[], bool] = lambda: False, shared: SharedAnswers | None = None) -> None:
        self.pool, self.address, self.credentials = pool, address, credentials
        self.deadline, self.interrupted, self.shared = deadline, interrupted, shared

    def _query(self, promql: str) -> list[dict[str, Any]]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise MetricError("analysis deadline passed before this query")
        timeout = min(QUERY_TIMEOUT_SECONDS, remaining)
        future: Future[list[dict[str, Any]]] = asyncio.run_coroutine_threadsafe(
            self.pool.query(self.address, self.credentials, promql, timeout), self.pool.loop)
        try:
            return _wait(future, timeout, self.interrupted, grace=1.0)
        except (AnalysisInterrupted, MetricError):
            future.cancel()
            raise

    def grouped(self, promql: str, labels: tuple[str, ...], part: str | None, max_age: float | None) -> Grouped:
        """The answer by arm. With `max_age`, a shared evaluation at most that many seconds old (one a
        rollout before this started, or one this starts); without, this run's own."""
        if max_age is None or self.shared is None:
            return group(self._query(promql), labels, part)
        return self.shared.read(self, promql, labels, part, max_age)
    def starter(self) -> Starter:
        """A provider like this one that only starts the shared evaluations it is asked for."""
        return Starter(self.pool, self.address, self.credentials, self.deadline, self.interrupted, self.shared)

    def scalar(self, query: str) -> float | None:
        result = self._query(query)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value


class Starter(PrometheusProvider):
    """Starts the shared evaluations a look is about to read, and waits for none of them: the look's reads
    then wait for the slowest answer, not for the sum of them (at 10,000 rollouts an answer holds 100,000
    series, and a look that read its five in turn took longer than its interval)."""

    def grouped(self, promql: str, labels: tuple[str, ...], part: str | None, max_age: float | None) -> Grouped:
        if max_age is not None and self.shared is not None:
            self.shared.start(self, promql, labels, part, max_age)
        return {}

    def scalar(self, query: str) -> float | None:
        return None


def _wait(future: Future[_T], seconds: float, interrupted: Callable[[], bool], grace: float = 0.0) -> _T:
    """The future's result within `seconds` (+ `grace`, for a timeout of its own to fire first), checked
    in slices so that an interrupt is seen within milliseconds."""
    until = time.monotonic() + seconds + grace
    while True:
        if interrupted():
            raise AnalysisInterrupted("a manual action arrived")
        try:
            return future.result(_POLL_SECONDS)
        except TimeoutError:
            if time.monotonic() > until:
                raise MetricError(f"prometheus query timed out after {seconds:.1f}s") from None


def group(result: list[dict[str, Any]], labels: tuple[str, ...], part: str | None) -> Grouped:
    """An instant vector by arm and part; NaN is no value, as an empty answer is."""
    grouped: Grouped = {}
    for series in result:
        value = float(series["value"][1])
        if not math.isnan(value):
            metric = series["metric"]
            arm = tuple(metric.get(label, "") for label in labels)
            grouped.setdefault(arm, {})[metric.get(part, "") if part else ""] = value
    return grouped


@dataclass
class _Shared:
    started: float
    answer: Future[Grouped]
    # The oldest any of its readers would take it: past that, it serves nobody and is dropped.
    max_age: float


class SharedAnswers:
    """One evaluation per (Prometheus, credentials, query), reused while it is fresh enough for the
    reader. Readers wait for an evaluation in flight rather than start their own, and never cancel
    it: the others still want it. A failed evaluation is shared too, so a broken Prometheus is asked
    once per interval, not once per rollout."""

    def __init__(self, pool: PrometheusPool, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool, self.clock = pool, clock
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, Credentials, str], _Shared] = {}
        self.evaluations = 0

    def read(self, provider: PrometheusProvider, promql: str, labels: tuple[str, ...], part: str | None,
             max_age: float) -> Grouped:
        answer = self.start(provider, promql, labels, part, max_age)
        remaining = provider.deadline - time.monotonic()
        if remaining <= 0:
            raise MetricError("analysis deadline passed before this query")
        return _wait(answer, remaining, provider.interrupted)

    def start(self, provider: PrometheusProvider, promql: str, labels: tuple[str, ...], part: str | None,
              max_age: float) -> Future[Grouped]:
        """The evaluation a read would wait for: one fresh enough, or one started now."""
        key = (provider.address, provider.credentials, promql)
        now = self.clock()
        with self._lock:
            shared = self._answers.get(key)
            if shared is None or now - shared.started > max_age:
                answer = asyncio.run_coroutine_threadsafe(
                    self._evaluate(provider.address, provider.credentials, promql, labels, part), self.pool.loop)
                self._forget(now)
                shared = self._answers[key] = _Shared(now, answer, max_age)
                self.evaluations += 1
            shared.max_age = max(shared.max_age, max_age)
            return shared.answer

    async def _evaluate(self, address: str, credentials: Credentials, promql: str, labels: tuple[str, ...],
                        part: str | None) -> Grouped:
        result = await self.pool.query(address, credentials, promql, QUERY_TIMEOUT_SECONDS)
        try:
            # Off the event loop, for the same reason as the parse: a fleet has tens of thousands of series.
            return await asyncio.to_thread(group, result, labels, part)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise MetricError(f"prometheus answered in an unexpected shape: {type(error).__name__}") from error

    def _forget(self, now: float) -> None:
        """Drop what no reader would take any more. Young steps cut their windows at the step's start,
        so each second of step age is a query of its own: kept longer, those answers held the whole
        fleet's arms dozens of times over (100 MB at 1,000 rollouts)."""
        for key in [key for key, shared in self._answers.items() if now - shared.started > shared.max_age]:
            del self._answers[key]
