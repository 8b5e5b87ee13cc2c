"""The read-path benchmark's fake Prometheus answers like a real one, on a recorded scrape.

Four test-kit model servers (two pods an arm) are scraped by a real Prometheus every 2 s, each at
the phase Prometheus gives it. The samples it stored are replayed through
`benchmarks.read_path.Samples`, and at query times between scrapes its answers are compared with
Prometheus' own: `sum(counter)` and `avg(timestamp(counter))` per arm, the two readings the
analysis takes at every look.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from devkit.sandbox.prometheus import start_prometheus
from e2e.harness import wait_until
from e2e.model_server import Knobs, ModelServer, ServerConfig

from benchmarks.read_path import Samples
from tests.integration.test_alerts import _load

pytestmark = pytest.mark.prometheus

ARMS = ("stable", "candidate")
SAMPLES_PER_POD = 8


def _query(url: str, query: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": query} if at is None else {"query": query, "time": f"{at:.3f}"}
    answer = httpx.get(f"{url}/api/v1/query", params=params, timeout=10).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _recorded(url: str, at: float) -> dict[str, Samples]:
    """Every sample Prometheus stored of each arm's pods, as the fake keeps them."""
    series = _query(url, "inference_request_total[10m]", at)
    arms: dict[str, Samples] = {}
    for arm in ARMS:
        pods = sorted({s["metric"]["instance"] for s in series if s["metric"]["version"] == arm})
        values = {(s["metric"]["instance"], s["metric"]["status"]): s["values"] for s in series
                  if s["metric"]["version"] == arm}
        times = [np.array([float(t) for t, _ in values[(pod, "ok")]]) for pod in pods]
        for pod, stamps in zip(pods, times, strict=True):
            assert [float(t) for t, _ in values[(pod, "error")]] == stamps.tolist(), "one scrape, one timestamp"
        arms[arm] = Samples(times, [np.array([float(v) for _, v in values[(pod, "ok")]]) for pod in pods],
                            [np.array([float(v) for _, v in values[(pod, "error")]]) for pod in pods])
    return arms


def _scraped_enough(url: str) -> bool:
    found = _query(url, "count_over_time(inference_request_total[10m])")
    return len(found) == 8 and min(float(s["value"][1]) for s in found) >= SAMPLES_PER_POD


def test_the_fakes_instant_answers_match_prometheus_on_a_recorded_scrape(tmp_path: Path) -> None:
    with ExitStack() as stack:
        knobs = Knobs(latency_ms=1, error_rate=0.05)
        servers = [stack.enter_context(ModelServer(ServerConfig("scorer", arm, knobs=knobs, seed=seed)))
                   for seed, arm in enumerate(ARMS * 2)]
        _compare(tmp_path, servers)


def _compare(tmp_path: Path, servers: list[ModelServer]) -> None:
    stop = threading.Event()
    prometheus = start_prometheus(tmp_path / "prometheus", [
        {"job_name": "models", "static_configs": [{"targets": [f"127.0.0.1:{s.port}" for s in servers]}]}],
        scrape_interval="2s")
    loads = [threading.Thread(target=_load, args=(server.url, stop), daemon=True) for server in servers]
    for load in loads:
        load.start()
    try:
        wait_until(lambda: _scraped_enough(prometheus.url), 180, f"{SAMPLES_PER_POD} scrapes of every pod", every=1.0)
        now = time.time()
        arms = _recorded(prometheus.url, now)
        first = max(float(times[0]) for samples in arms.values() for times in samples.times)
        last = min(float(times[-1]) for samples in arms.values() for times in samples.times)
        # Between scrapes, on them, and where only some pods have been scraped since the last look.
        moments = [*np.linspace(first, last, 23).tolist(), *(float(t) for t in arms["stable"].times[0][1:6])]
        for at in moments:
            totals = {s["metric"]["version"]: float(s["value"][1]) for s in _query(
                prometheus.url, 'sum by (version) (inference_request_total{status="ok"})', at)}
            errors = {s["metric"]["version"]: float(s["value"][1]) for s in _query(
                prometheus.url, 'sum by (version) (inference_request_total{status="error"})', at)}
            stamps = {s["metric"]["version"]: float(s["value"][1]) for s in _query(
                prometheus.url, 'avg by (version) (timestamp(inference_request_total{status="ok"}))', at)}
            for arm in ARMS:
                fake = arms[arm].instant(at)
                assert (fake.ok, fake.error) == (totals[arm], errors[arm]), (arm, at)
                assert fake.sampled_at == pytest.approx(stamps[arm], abs=1e-3), (arm, at)
        assert arms["stable"].instant(last).error > 0, "the errors were counted too"
    finally:
        stop.set()
        for load in loads:
            load.join(10)
        prometheus.stop()
