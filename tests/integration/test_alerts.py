"""The alert rules: promtool accepts them, the chart carries them unchanged, and the seeds' inference
alerts fire in a real Prometheus for a fault injected into a real (simulated) model server."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devkit.sandbox.prometheus import start_prometheus
from e2e.harness import wait_until
from e2e.model_server import Knobs, ModelServer, ServerConfig

from tests.integration.test_chart import CHART, rendered

ALERTS = CHART / "alerts"


@pytest.mark.parametrize("rules", ["operator.yaml", "inference.yaml"])
def test_promtool_accepts_the_rules(rules: str) -> None:
    result = subprocess.run(["promtool", "check", "rules", str(ALERTS / rules)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_prometheus_rule_carries_both_files_unchanged() -> None:
    rule = next(obj for obj in rendered("--set", "prometheusRule.enabled=true") if obj["kind"] == "PrometheusRule")
    files = [yaml.safe_load((ALERTS / name).read_text())["groups"] for name in ("operator.yaml", "inference.yaml")]
    assert rule["spec"]["groups"] == files[0] + files[1]
    names = [r["alert"] for group in files[1] for r in group["rules"]]
    assert names == ["HighLatency", "HighErrorRate", "GPUMemoryNearFull", "QueueDepthHigh"]
    off = rendered("--set", "prometheusRule.enabled=true", "--set", "prometheusRule.inferenceAlerts=false")
    assert next(obj for obj in off if obj["kind"] == "PrometheusRule")["spec"]["groups"] == files[0]


def _load(url: str, stop: threading.Event, limit_s: float = 400) -> None:
    """Bounded: 20 requests a second until stopped or `limit_s` passes."""
    deadline = time.monotonic() + limit_s
    with httpx.Client(timeout=5) as session:
        while not stop.is_set() and time.monotonic() < deadline:
            session.post(f"{url}/predict", json={"features": [1.0]})
            stop.wait(0.05)


def _alerts(url: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return alerts


def test_high_error_rate_fires_for_an_injected_fault_and_not_for_a_healthy_model(tmp_path: Path) -> None:
    faulty = ModelServer(ServerConfig("scorer", "faulty", knobs=Knobs(latency_ms=2, error_rate=0.2), seed=1))
    healthy = ModelServer(ServerConfig("ranker", "healthy", knobs=Knobs(latency_ms=2), seed=2))
    stop = threading.Event()
    with faulty, healthy:
        targets = [f"127.0.0.1:{server.port}" for server in (faulty, healthy)]
        prometheus = start_prometheus(tmp_path / "prometheus", [
            {"job_name": "models", "static_configs": [{"targets": targets}]}],
            scrape_interval="1s", rule_files=(ALERTS / "inference.yaml",))
        loads = [threading.Thread(target=_load, args=(server.url, stop), daemon=True) for server in (faulty, healthy)]
        for load in loads:
            load.start()
        try:
            # The rule holds for 2m before it fires.
            firing = wait_until(lambda: [alert for alert in _alerts(prometheus.url) if alert["labels"]["alertname"]
                                         == "HighErrorRate" and alert["state"] == "firing"], 300,
                                "HighErrorRate firing")
            assert {alert["labels"]["model"] for alert in firing} == {"scorer"}
            assert firing[0]["labels"]["severity"] == "critical"
            assert firing[0]["annotations"]["summary"] == "Error rate > 0.1% for scorer"
        finally:
            stop.set()
            for load in loads:
                load.join(10)
            prometheus.stop()


def test_every_dashboard_query_runs_in_prometheus(tmp_path: Path) -> None:
    board = json.loads((CHART / "dashboards" / "modelrollout.json").read_text())
    variables = {"$namespace": ".*", "$rollout": ".*"}
    queries = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    assert len(queries) >= 10
    prometheus = start_prometheus(tmp_path / "prometheus", [], scrape_interval="1s")
    try:
        for template in queries:
            query = template
            for name, value in variables.items():
                query = query.replace(name, value)
            answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=10)
            assert answer.status_code == 200 and answer.json()["status"] == "success", (query, answer.text)
    finally:
        prometheus.stop()
    names = [rule["alert"] for group in yaml.safe_load((ALERTS / "operator.yaml").read_text())["groups"]
             for rule in group["rules"]]
    assert {"RolloutStuck", "RolloutRolledBack", "AnalysisErroring", "OperatorDown"} <= set(names)
