"""Shared answers against a real loopback HTTP server: one evaluation serves every reader, a failed or
slow one holds only its readers, and a reader's interrupt never cancels what the others wait for."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controller.analysis.readings import MetricError
from controller.measure.prometheus import (
    AnalysisInterrupted,
    Credentials,
    PrometheusPool,
    PrometheusProvider,
    SharedAnswers,
)

ARMS = 40
LABELS = ("model", "version")


class _Handler(BaseHTTPRequestHandler):
    mode = "ok"
    queries: list[str]
    release: threading.Event

    def do_GET(self) -> None:
        self.queries.append(self.path)
        if self.mode == "hang":
            self.release.wait(30)  # Bounded: the fixture releases it on the way out.
        result: list[dict[str, Any]] = [
            {"metric": {"model": f"m{i}", "version": "v1"}, "value": [0, str(i)]} for i in range(ARMS)]
        result.append({"metric": {"model": "m0", "version": "v2"}, "value": [0, "NaN"]})
        status, body = 200, {"status": "success", "data": {"result": result}}
        if self.mode == "bad":
            status, body = 422, {"status": "error", "error": "bad_data"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[tuple[ThreadingHTTPServer, type[_Handler]]]:
    handler: type[_Handler] = type("Handler", (_Handler,), {"queries": [], "release": threading.Event()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd, handler
    finally:
        handler.release.set()
        httpd.shutdown()
        httpd.server_close()


def _address(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reader(pool: PrometheusPool, shared: SharedAnswers, address: str, deadline: float = 5.0,
            interrupted: threading.Event | None = None) -> PrometheusProvider:
    flag = interrupted or threading.Event()
    return PrometheusProvider(pool, address, Credentials(), time.monotonic() + deadline, flag.is_set, shared)


async def test_every_reader_within_the_age_shares_one_evaluation(
        server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    pool, clock = PrometheusPool(asyncio.get_running_loop()), _Clock()
    shared = SharedAnswers(pool, clock)

    def read(i: int) -> float | None:
        provider = _reader(pool, shared, _address(server[0]))
        return provider.grouped("q", LABELS, None, 10.0).get((f"m{i}", "v1"), {}).get("")

    with ThreadPoolExecutor(8) as threads:
        values = await asyncio.to_thread(lambda: list(threads.map(read, range(ARMS))))
    assert values == [float(i) for i in range(ARMS)], "each reader finds its own arm"
    assert len(server[1].queries) == 1
    provider = _reader(pool, shared, _address(server[0]))
    assert ("m0", "v2") not in await asyncio.to_thread(provider.grouped, "q", LABELS, None, 10.0), "NaN is no value"
    clock.now += 10.5
    await asyncio.to_thread(provider.grouped, "q", LABELS, None, 10.0)
    assert len(server[1].queries) == 2, "an answer older than the reader's age is evaluated again"
    await asyncio.to_thread(provider.grouped, "other", LABELS, None, 10.0)
    assert len(server[1].queries) == 3, "another query is another answer"
    assert shared.evaluations == 3
    await pool.close()


async def test_an_answer_no_reader_would_take_is_dropped(server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    """Young steps cut their windows at the step's start: each second of age is a query of its own,
    and each answer holds every arm. Kept longer than any reader's age, they piled up."""
    pool, clock = PrometheusPool(asyncio.get_running_loop()), _Clock()
    shared = SharedAnswers(pool, clock)
    provider = _reader(pool, shared, _address(server[0]))
    for age in range(30):
        await asyncio.to_thread(provider.grouped, f"increase(x[{age + 1}s])", LABELS, None, 5.0)
        clock.now += 1.0
    assert len(shared._answers) <= 6, "only answers at most 5 s old are kept"
    # A reader that takes older answers keeps the one it read for as long as it would take it.
    await asyncio.to_thread(provider.grouped, "slow", LABELS, None, 30.0)
    clock.now += 20.0
    await asyncio.to_thread(provider.grouped, "other", LABELS, None, 5.0)
    assert "slow" in {key[2] for key in shared._answers}
    await pool.close()


async def test_a_failed_evaluation_is_shared_not_retried_by_every_reader(
        server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    server[1].mode = "bad"
    pool = PrometheusPool(asyncio.get_running_loop())
    shared = SharedAnswers(pool, _Clock())
    for _ in range(10):
        provider = _reader(pool, shared, _address(server[0]))
        with pytest.raises(MetricError, match="HTTP 422"):
            await asyncio.to_thread(provider.grouped, "q", LABELS, None, 10.0)
    assert len(server[1].queries) == 1
    await pool.close()


async def test_a_slow_prometheus_holds_its_readers_only_and_an_interrupt_cancels_nothing(
        server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    slow, handler = server
    handler.mode = "hang"
    pool = PrometheusPool(asyncio.get_running_loop())
    shared = SharedAnswers(pool, _Clock())
    interrupt = threading.Event()
    interrupted = _reader(pool, shared, _address(slow), interrupted=interrupt)
    waiting = asyncio.create_task(asyncio.to_thread(interrupted.grouped, "q", LABELS, None, 10.0))

    def asked() -> bool:
        return bool(handler.queries)

    await asyncio.to_thread(_until, asked)
    interrupt.set()
    with pytest.raises(AnalysisInterrupted):
        await waiting
    # A reader with a short deadline gives up with a reason; the evaluation goes on for the others.
    hurried = _reader(pool, shared, _address(slow), deadline=0.2)
    with pytest.raises(MetricError, match="timed out"):
        await asyncio.to_thread(hurried.grouped, "q", LABELS, None, 10.0)
    patient = _reader(pool, shared, _address(slow))
    answer = asyncio.create_task(asyncio.to_thread(patient.grouped, "q", LABELS, None, 10.0))
    handler.release.set()
    assert (await answer)[("m3", "v1")] == {"": 3.0}
    assert len(handler.queries) == 1, "neither the interrupt nor the deadline cancelled the shared evaluation"
    await pool.close()


def _until(condition: Any, limit: float = 10.0) -> None:
    ends = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < ends, "the server was never asked"
        time.sleep(0.01)
