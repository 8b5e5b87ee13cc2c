"""A look's shared answers are asked for together: it waits for the slowest, not for their sum.

At 10,000 rollouts each fleet answer holds 100,000 series; a look that read its five in turn took
longer than its interval, and every worker waited. A loopback Prometheus here holds each query
until a second one is in flight (or a few seconds pass), and records how many it held at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller import api
from controller.analysis.readings import Look, needs
from controller.engine.plan import AnalysisPlan, Plan
from controller.measure.credentials import SecretView
from controller.measure.measure import AnalysisIO, DefaultPrometheus, Measurer, RolloutRef
from controller.measure.prometheus import PrometheusPool, SharedAnswers

HOLD_SECONDS = 2.0  # bounded: a query alone is answered after this


class _Handler(BaseHTTPRequestHandler):
    lock: threading.Condition
    in_flight: list[int]  # [now, most at once]
    paths: list[str]

    def do_GET(self) -> None:
        with self.lock:
            self.paths.append(self.path)
            self.in_flight[0] += 1
            self.in_flight[1] = max(self.in_flight)
            self.lock.notify_all()
            self.lock.wait_for(lambda: self.in_flight[0] >= 2, HOLD_SECONDS)
        payload = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        with self.lock:
            self.in_flight[0] -= 1

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def prometheus() -> Iterator[tuple[str, type[_Handler]]]:
    handler: type[_Handler] = type("Handler", (_Handler,), {
        "lock": threading.Condition(), "in_flight": [0, 0], "paths": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _no_secret(namespace: str, name: str) -> SecretView:
    raise AssertionError(f"no Secret is read here: {namespace}/{name}")


async def test_a_looks_shared_answers_are_in_flight_together(prometheus: tuple[str, type[_Handler]]) -> None:
    url, handler = prometheus
    spec = api.ModelRolloutSpec.model_validate({
        "model": "scorer", "template": {"spec": {"containers": [{"name": "m", "image": "m:1"}]}},
        "trafficRouting": {"gatewayAPI": {"httpRoute": "scorer"}},
        "strategy": {"steps": [{"canary": {"weight": 20, "duration": "10m"}}]},
        "analysis": {"guardrails": [{"name": "errors", "template": "errorRate", "relativeToStable": 1},
                                    {"name": "latency", "template": "latencyP99", "relativeToStable": 1}]},
    })
    look = Look(stable="s1", candidate="c1", step_index=0, step_kind="canary", step_started_at="2026-12-07T00:00:00Z",
                step_elapsed_seconds=600, weight=20, now="2026-12-07T00:10:00Z")
    pool = PrometheusPool(asyncio.get_running_loop())
    io = AnalysisIO(pool, _no_secret, default_prometheus=DefaultPrometheus(url), shared=SharedAnswers(pool))
    measurer = Measurer(io, spec, RolloutRef("scorer", "team-a", "scorer"), lambda _: None, lambda _: 0)
    readings = needs(spec, look, None)
    readings_out = await asyncio.to_thread(
        measurer.measure, Plan(analysis=AnalysisPlan(look, readings, True, 60)))
    await pool.close()
    assert readings_out.analysis is not None and readings_out.analysis.measured is not None
    assert len(set(handler.paths)) >= 4, handler.paths
    assert handler.in_flight[1] >= 2, "the look's shared answers were in flight together, not one after another"
