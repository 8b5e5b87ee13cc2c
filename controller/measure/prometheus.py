"""Prometheus over its HTTP API (`/api/v1/query`), on httpx's async client.

Queries run on the operator's event loop with a per-Prometheus semaphore, so
one slow Prometheus holds at most `MAX_CONCURRENT_QUERIES` of them and never a
thread. The analysis itself is synchronous code in a reconcile worker: it
waits for each query with the run's deadline, and gives up at once when the
runtime interrupts it (a manual action arrived: an abort never waits on analysis).
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import httpx

from controller.analysis.readings import MetricError

QUERY_TIMEOUT_SECONDS = 5.0
MAX_CONCURRENT_QUERIES = 8
# How often a waiting worker checks for an interrupt.
_POLL_SECONDS = 0.05


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
                payload = response.json()
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
                 interrupted: Callable[[], bool] = lambda: False) -> None:
        self.pool, self.address, self.credentials = pool, address, credentials
        self.deadline, self.interrupted = deadline, interrupted

    def _query(self, promql: str) -> list[dict[str, Any]]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise MetricError("analysis deadline passed before this query")
        timeout = min(QUERY_TIMEOUT_SECONDS, remaining)
        future: Future[list[dict[str, Any]]] = asyncio.run_coroutine_threadsafe(
            self.pool.query(self.address, self.credentials, promql, timeout), self.pool.loop)
        # Wait in slices, so an interrupt is seen within milliseconds, not after the timeout.
        waited_until = time.monotonic() + timeout + 1.0
        while True:
            if self.interrupted():
                future.cancel()
                raise AnalysisInterrupted("a manual action arrived")
            try:
                return future.result(_POLL_SECONDS)
            except TimeoutError:
                if time.monotonic() > waited_until:
                    future.cancel()
                    raise MetricError(f"prometheus query timed out after {timeout:.1f}s") from None

    def scalar(self, query: str) -> float | None:
        result = self._query(query)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def by_label(self, query: str, label: str) -> dict[str, float]:
        values = {}
        for series in self._query(query):
            value = float(series["value"][1])
            if not math.isnan(value):
                values[series["metric"].get(label, "")] = value
        return values

