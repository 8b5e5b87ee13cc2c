"""The Prometheus provider against real loopback HTTP servers: short errors, deadlines, interrupts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.analysis.readings import MetricError
from controller.measure.prometheus import AnalysisInterrupted, Credentials, PrometheusPool, PrometheusProvider


class _Handler(BaseHTTPRequestHandler):
    mode = "ok"

    def do_GET(self) -> None:
        if self.mode == "hang":
            time.sleep(3)
        status, body = (200, {"status": "success", "data": {"result": [{"metric": {}, "value": [0, "0.25"]}]}})
        if self.mode == "bad":
            status, body = 400, {"status": "error", "error": "parse error at char 1: " + "x" * 2000}
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
    handler = type("Handler", (_Handler,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd, handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _provider(httpd: ThreadingHTTPServer, deadline: float = 5.0,
              interrupted: threading.Event | None = None) -> tuple[PrometheusPool, PrometheusProvider]:
    pool = PrometheusPool(asyncio.get_running_loop())
    flag = interrupted or threading.Event()
    address = f"http://127.0.0.1:{httpd.server_address[1]}"
    return pool, PrometheusProvider(pool, address, Credentials(), time.monotonic() + deadline, flag.is_set)


async def test_a_query_answers_through_the_event_loop(server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    pool, provider = _provider(server[0])
    assert await asyncio.to_thread(provider.scalar, "up") == 0.25
    await pool.close()


async def test_an_error_is_one_short_line_without_the_query(
        server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    server[1].mode = "bad"
    pool, provider = _provider(server[0])
    with pytest.raises(MetricError) as error:
        await asyncio.to_thread(provider.scalar, "sum(rate(" + "very_long_query" * 100 + "[1m]))")
    assert str(error.value) == "prometheus answered HTTP 400"
    await pool.close()


async def test_the_run_deadline_bounds_a_hung_prometheus(server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    server[1].mode = "hang"
    pool, provider = _provider(server[0], deadline=0.3)
    with pytest.raises(MetricError):
        await asyncio.to_thread(provider.scalar, "up")
    with pytest.raises(MetricError, match="deadline"):
        await asyncio.to_thread(provider.scalar, "up")
    await pool.close()


async def test_an_interrupt_ends_the_wait_at_once(server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    server[1].mode = "hang"
    interrupted = threading.Event()
    pool, provider = _provider(server[0], deadline=10, interrupted=interrupted)
    asyncio.get_running_loop().call_later(0.2, interrupted.set)
    # Had it waited for the server, the query would have answered (after 3 s) instead of raising.
    with pytest.raises(AnalysisInterrupted):
        await asyncio.to_thread(provider.scalar, "up")
    await pool.close()
