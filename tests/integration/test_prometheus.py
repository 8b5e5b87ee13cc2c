"""A real Prometheus (Debian's package) scrapes a real HTTP exporter on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from devkit.sandbox.prometheus import start_prometheus
from e2e.harness import wait_until

pytestmark = pytest.mark.prometheus

EXPOSITION = (
    "# TYPE inference_request_total counter\n"
    'inference_request_total{model="scorer",version="stable",status="ok"} 42\n'
)


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = EXPOSITION.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_prometheus_scrapes_the_exporter_with_the_callers_config(tmp_path: Path, exporter: int) -> None:
    server = start_prometheus(
        tmp_path / "prom",
        [{"job_name": "model", "static_configs": [{"targets": [f"127.0.0.1:{exporter}"]}]}],
    )
    try:
        def scraped() -> list[dict[str, object]]:
            answer = httpx.get(f"{server.url}/api/v1/query",
                               params={"query": 'inference_request_total{model="scorer"}'}).json()
            found: list[dict[str, object]] = answer["data"]["result"]
            return found

        result = wait_until(scraped, 30, "Prometheus scraping the exporter")
        assert result[0]["value"][1] == "42"  # type: ignore[index]
    finally:
        server.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/-/ready", timeout=1)
