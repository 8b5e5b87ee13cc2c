"""Every profile's templates, read by the operator's own measuring port against a real Prometheus.

MLServer and KServe's Python server (from PyPI) run live: the test sends them good and bad requests
and Prometheus scrapes their /metrics. The servers that need a GPU or are not on PyPI are served
from hand-written expositions in tests/fixtures/expositions (each says where its names come from).
Each scrape job adds `version: <revision>`, as the README's relabelling copies it from the pod, so
a server's own `version` label becomes `exported_version`, as it does in a cluster.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from devkit.sandbox.prometheus import PrometheusServer, start_prometheus
from e2e import real_servers
from e2e.harness import wait_until

from controller import api
from controller.analysis.readings import (
    Buckets,
    ErrorRate,
    Gauge,
    Look,
    Measurements,
    MetricError,
    Quantile,
    RequestCounts,
    needs,
)
from controller.engine.plan import AnalysisPlan, Plan
from controller.measure.measure import AnalysisIO, DefaultPrometheus, Measurer, RolloutRef
from controller.measure.prometheus import PrometheusPool, SharedAnswers
from controller.profiles import GAUGE_TEMPLATES, HISTOGRAM_TEMPLATES, unsupported

pytestmark = pytest.mark.prometheus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "expositions"
NAMESPACE, ROLLOUT = "ml", "scorer"
# (profile, the server's model label value, the version the queries select)
FIXTURE_PROFILES = [("vllm", "llama", "rev-vllm"), ("sglang", "llama", "rev-sglang"), ("tgi", "tgi", "rev-tgi"),
                    ("triton", "scorer", "rev-triton"), ("torchserve", "scorer", "rev-torchserve"),
                    ("inference-gateway", "llama", "llama-v2")]


class _Exposition(ThreadingHTTPServer):
    """Serves a fixture with every value times the number of scrapes so far: counters grow, so
    rate() and increase() have something to measure."""

    def __init__(self, text: str) -> None:
        self.text, self.scrapes = text, 0
        super().__init__(("127.0.0.1", 0), _ExpositionHandler)

    def body(self) -> bytes:
        self.scrapes += 1
        lines = []
        for line in self.text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                lines.append(f"{name} {float(value) * self.scrapes:g}")
            else:
                lines.append(line)
        return ("\n".join(lines) + "\n").encode()


class _ExpositionHandler(BaseHTTPRequestHandler):
    server: _Exposition

    def do_GET(self) -> None:
        body = self.server.body()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _served(text: str) -> Iterator[str]:
    server = _Exposition(text)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _dcgm(versions: list[str]) -> str:
    """DCGM exporter's two framebuffer gauges (MiB) for one GPU of each version's pod."""
    lines = ["# TYPE DCGM_FI_DEV_FB_USED gauge", "# TYPE DCGM_FI_DEV_FB_FREE gauge"]
    for gpu, version in enumerate(versions):
        labels = (f'gpu="{gpu}",modelName="NVIDIA A10G",namespace="{NAMESPACE}",'
                  f'pod="{ROLLOUT}-{version}-5d8f9c7b6-x2k4p",container="model"')
        lines += [f"DCGM_FI_DEV_FB_USED{{{labels}}} 18000", f"DCGM_FI_DEV_FB_FREE{{{labels}}} 4000"]
    return "\n".join(lines)


def _job(name: str, target: str, version: str | None, path: str = "/metrics") -> dict[str, Any]:
    labels = {"version": version} if version else {}
    return {"job_name": name, "metrics_path": path, "static_configs": [{"targets": [target], "labels": labels}]}


@contextmanager
def _pool() -> Iterator[PrometheusPool]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    pool = PrometheusPool(loop)
    try:
        yield pool
    finally:
        asyncio.run_coroutine_threadsafe(pool.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


WINDOW = "30s"


def _no_secret(namespace: str, name: str) -> Any:
    raise AssertionError(f"no Secret is read here: {namespace}/{name}")


def _measure(profile: str, model: str, version: str, pool: PrometheusPool, url: str,
             shared: SharedAnswers | None = None, extra: tuple[dict[str, Any], ...] = (), elapsed: float = 600
             ) -> tuple[api.ModelRolloutSpec, Measurements]:
    """Every supported guardrail of `profile` (and `extra` ones), as one look of the operator plans and
    measures it; with `shared`, as a rollout of one operator process that reads the fleet's answers."""
    templates = [t for t in (*HISTOGRAM_TEMPLATES, *GAUGE_TEMPLATES, "errorRate") if t not in unsupported(profile)]
    spec = api.ModelRolloutSpec.model_validate({
        "model": model, "template": {"spec": {"containers": [{"name": "m", "image": "m:1"}]}},
        "trafficRouting": {"gatewayAPI": {"httpRoute": ROLLOUT}},
        "strategy": {"steps": [{"canary": {"weight": 50, "duration": "10m"}}]},
        "analysis": {"profile": profile, "window": WINDOW,
                     "guardrails": [*({"name": t, "template": t, "max": 1e9} for t in templates), *extra]},
    })
    look = Look(stable=version, candidate=version, step_index=0, step_kind="canary",
                step_started_at="2026-11-24T00:00:00Z", step_elapsed_seconds=elapsed, weight=50,
                now="2026-11-24T00:10:00Z")
    io = AnalysisIO(pool, _no_secret, default_prometheus=DefaultPrometheus(url, custom_queries=True), shared=shared)
    measurer = Measurer(io, spec, RolloutRef(model, NAMESPACE, ROLLOUT), lambda _: None, lambda _: 0)
    readings = measurer.measure(Plan(analysis=AnalysisPlan(look, needs(spec, look, None), True, 600)))
    assert readings.analysis is not None and readings.analysis.measured is not None, readings
    return spec, readings.analysis.measured


def _by_template(spec: api.ModelRolloutSpec, measured: Measurements, version: str) -> dict[str, Any]:
    """What each guardrail's template read."""
    assert spec.analysis is not None
    found: dict[str, Any] = {}
    for guardrail in spec.analysis.guardrails:
        template = guardrail.template or ""
        if template in GAUGE_TEMPLATES:
            found[template] = measured.scalar(Gauge(template, version, WINDOW))
        elif template in HISTOGRAM_TEMPLATES:
            series, q = HISTOGRAM_TEMPLATES[template]
            found[template] = (measured.scalar(Quantile(q, series, version, WINDOW)),
                               measured.buckets(Buckets(series, version)))
        else:
            found[template] = measured.scalar(ErrorRate(version, WINDOW))
    return found


def _wait_scraped(prometheus: PrometheusServer, jobs: int, scrapes: int = 3) -> None:
    """Until every job is up and has been scraped `scrapes` times (rate() needs two samples)."""
    query = f"count_over_time(up[1m]) >= {scrapes}"

    def scraped() -> bool:
        answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=5).json()
        return len(answer["data"]["result"]) >= jobs

    wait_until(scraped, 90, "Prometheus scraping every target")
    up = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": "up == 0"}, timeout=5).json()
    assert not up["data"]["result"], f"a target is down: {up}"


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def test_every_profile_reads_its_servers_exposition(tmp_path: Path) -> None:
    versions = [version for _, _, version in FIXTURE_PROFILES]
    with ExitStack() as stack:
        jobs = [_job(profile, stack.enter_context(_served((FIXTURES / f"{profile}.prom").read_text())),
                     None if profile == "inference-gateway" else version)
                for profile, _, version in FIXTURE_PROFILES]
        jobs.append(_job("dcgm", stack.enter_context(_served(_dcgm(versions))), None))
        prometheus = start_prometheus(tmp_path / "prometheus", jobs, scrape_interval="1s")
        stack.callback(prometheus.stop)
        _wait_scraped(prometheus, len(jobs))
        pool = stack.enter_context(_pool())
        for profile, model, version in FIXTURE_PROFILES:
            spec, readings = _measure(profile, model, version, pool, prometheus.url)
            measured = _by_template(spec, readings, version)
            assert spec.analysis is not None
            assert set(measured) == {g.template for g in spec.analysis.guardrails}
            for template, value in measured.items():
                if template in HISTOGRAM_TEMPLATES:
                    quantile, buckets = value
                    assert _finite(quantile) and buckets, f"{profile} {template}: {value}"
                else:
                    assert _finite(value), f"{profile} {template}: {value}"
            if "errorRate" in measured:
                assert 0 < measured["errorRate"] < 0.05, f"{profile}: {measured['errorRate']}"
                outcome = readings.outcomes(RequestCounts(version))
                assert outcome.ok > 0 and outcome.error > 0, f"{profile}: {outcome}"
                # The arm's last scrape time, read in the same evaluation as its total.
                assert outcome.sampled_at is not None and abs(outcome.sampled_at - time.time()) < 300, outcome
            assert measured["gpuMemoryUsage"] == pytest.approx(18000 / 22000)


def _infer_mlserver(url: str, rows: list[list[float]]) -> int:
    body = {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64",
                        "data": [v for row in rows for v in row]}]}
    return httpx.post(f"{url}/v2/models/{ROLLOUT}/infer", json=body, timeout=30).status_code


def test_a_live_mlserver_and_kserve_through_their_profiles(tmp_path: Path) -> None:
    with ExitStack() as stack:
        model = real_servers.train(tmp_path / "mlserver", real_servers.ModelVersion(ROLLOUT, reject_negative=True))
        mls = stack.enter_context(real_servers.mlserver(model, ROLLOUT))
        kserve = stack.enter_context(real_servers.kserve(tmp_path / "kserve", ROLLOUT))
        good, bad = [[0.5, -0.2, 0.1, 0.3]], [[0.5, -0.2, 0.1, -0.3]]
        answers = [_infer_mlserver(mls.url, good) for _ in range(8)] + [_infer_mlserver(mls.url, bad) for _ in range(2)]
        assert answers.count(200) == 8 and answers.count(500) == 2, "the model itself rejects a negative last feature"
        for _ in range(6):
            answer = httpx.post(f"{kserve.url}/v1/models/{ROLLOUT}:predict", json={"instances": good}, timeout=30)
            assert answer.status_code == 200, answer.text
        metrics_port = re.search(r":(\d+)/metrics$", mls.metrics_url)
        assert metrics_port is not None
        jobs = [_job("mlserver", f"127.0.0.1:{metrics_port.group(1)}", "rev-mlserver"),
                _job("kserve", kserve.metrics_url.split("//", 1)[1].rsplit("/", 1)[0], "rev-kserve")]
        prometheus = start_prometheus(tmp_path / "prometheus", jobs, scrape_interval="1s")
        stack.callback(prometheus.stop)
        _wait_scraped(prometheus, len(jobs))
        pool = stack.enter_context(_pool())

        _, mlserver = _measure("mlserver", ROLLOUT, "rev-mlserver", pool, prometheus.url)
        counted = mlserver.outcomes(RequestCounts("rev-mlserver"))
        assert (counted.ok, counted.error) == (8.0, 2.0)
        assert counted.sampled_at is not None and abs(counted.sampled_at - time.time()) < 300, counted
        # MLServer's own `version` label ("None", whatever the model settings say) stays as exported_version.
        raw = httpx.get(f"{prometheus.url}/api/v1/query", timeout=5, params={
            "query": 'model_infer_request_success_total{version="rev-mlserver"}'}).json()["data"]["result"]
        assert raw and raw[0]["metric"]["exported_version"] == "None"
        latency = mlserver.buckets(Buckets("latency", "rev-mlserver"))
        assert latency[math.inf] == 10.0, "every /infer request, failed ones too, is in the histogram"

        _, kserve_measured = _measure("kserve", ROLLOUT, "rev-kserve", pool, prometheus.url)
        assert kserve_measured.buckets(Buckets("latency", "rev-kserve"))[math.inf] == 6.0


FLEET_ARMS = 30


def _fleet_exposition() -> str:
    """The seeds profile's counters and latency histogram for FLEET_ARMS versions of model `m`, with
    values the test knows, and a model `n` that shares version v1's name."""
    lines = ["# TYPE inference_request_total counter", "# TYPE inference_request_duration_seconds histogram"]
    for i in range(1, FLEET_ARMS + 1):
        arm = f'model="m",version="v{i}"'
        lines += [f'inference_request_total{{{arm},status="ok"}} {100 * i}',
                  f'inference_request_total{{{arm},status="error"}} {i}',
                  f'inference_request_duration_seconds_bucket{{{arm},le="0.1"}} {50 * i}',
                  f'inference_request_duration_seconds_bucket{{{arm},le="+Inf"}} {101 * i}',
                  f"inference_request_duration_seconds_sum{{{arm}}} {10 * i}",
                  f"inference_request_duration_seconds_count{{{arm}}} {101 * i}"]
    lines.append('inference_request_total{model="n",version="v1",status="ok"} 7')
    return "\n".join(lines)


class _Static(ThreadingHTTPServer):
    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(("127.0.0.1", 0), _ExpositionHandler)

    def body(self) -> bytes:
        return (self.text + "\n").encode()


def _query_count(prometheus: PrometheusServer) -> float:
    """Instant queries Prometheus has answered, by its own counter on its /metrics."""
    exposition = httpx.get(f"{prometheus.url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
               if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line)


def test_a_fleet_of_rollouts_shares_one_query_per_template(tmp_path: Path) -> None:
    """30 rollouts of one process read their own arms' counts from shared answers: the queries are
    the templates', not the rollouts', and one rollout's malformed query spoils nobody else's look."""
    with ExitStack() as stack:
        server = _Static(_fleet_exposition())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        # No job-level version: the series carry their own.
        prometheus = start_prometheus(tmp_path / "prometheus", [_job("fleet", f"127.0.0.1:{server.server_address[1]}",
                                                                     None)], scrape_interval="1s")
        stack.callback(prometheus.stop)
        _wait_scraped(prometheus, 1)
        pool = stack.enter_context(_pool())
        shared = SharedAnswers(pool)
        before = _query_count(prometheus)
        malformed = {"name": "mine", "query": 'sum(rate(broken{version="{{version}}"}[', "max": 1.0}
        for i in range(1, FLEET_ARMS + 1):
            extra = (malformed,) if i == 7 else ()
            _, measured = _measure("seeds", "m", f"v{i}", pool, prometheus.url, shared, extra)
            counted = measured.outcomes(RequestCounts(f"v{i}"))
            assert (counted.ok, counted.error) == (100.0 * i, float(i)), f"v{i}: {counted}"
            assert counted.sampled_at is not None and abs(counted.sampled_at - time.time()) < 60
            assert measured.buckets(Buckets("latency", f"v{i}")) == {0.1: 50.0 * i, math.inf: 101.0 * i}
            broken = [value for reading, value in measured.values.items() if "broken" in repr(reading)]
            assert bool(broken) == (i == 7) and all(isinstance(value, MetricError) for value in broken), broken
        # One is the malformed guardrail's: that rollout's own query.
        operator_queries = _query_count(prometheus) - before
        assert shared.evaluations <= 12, f"{shared.evaluations} shared evaluations for {FLEET_ARMS} rollouts"
        assert operator_queries == shared.evaluations + 1, (operator_queries, shared.evaluations)
        # A step 12 s old cuts its window there: those readings are its own arm's, not the fleet's
        # answer (a query per second of step age, each with every arm's series).
        _measure("seeds", "m", "v3", pool, prometheus.url, shared, elapsed=12)
        assert not [key for key in shared._answers if "[12s]" in key[2]]
