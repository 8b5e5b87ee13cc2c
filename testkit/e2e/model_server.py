"""A model-server simulator for end-to-end tests: one process per pod.

    python -m e2e.model_server --port 0 --port-file PATH --model scorer --version rev1 \\
        --latency-ms 20 --error-rate 0.01 --prediction-mean 0.4 --conversion-rate 0.1 --seed 7

Endpoints:

- ``POST /predict`` (JSON body) answers ``{"prediction": p, "model": M, "version": V}`` after a
  lognormal latency, with ``"cold": true`` while the model is cold; with probability ``error_rate``
  it answers HTTP 500 instead. A request with the header ``X-Mirrored: true`` (nginx marks its
  copies; Envoy does not) is a shadow copy: served and measured the same way, but it never counts a
  conversion (nobody sees a mirrored answer).
- ``GET /metrics``: Prometheus exposition from the server's own registry (names below).
- ``GET /healthz``: 200.
- ``GET /stats``: ``{"live": n, "mirrored": m, "cold_live": c, "cold_mirrored": d}``, the requests this
  server was sent, and those of them it answered cold.
- ``GET /knobs`` and ``POST /knobs`` (JSON, partial) read and change the behaviour at run time.

The knobs (see `Knobs`): ``latency_ms`` (median latency), ``latency_jitter`` (sigma of the
lognormal), ``error_rate``, ``prediction_mean`` and ``prediction_spread`` (mean and standard
deviation of the Beta distribution predictions are drawn from), ``conversion_rate`` (probability
that an OK, non-mirrored prediction leads to a business conversion), ``cold_requests`` and
``cold_latency_ms`` (the server's first `cold_requests` requests take `cold_latency_ms` each: a model
that loads or compiles lazily).

Randomness: a master generator (seeded by ``--seed``) hands every request its own generator, so
a run is reproducible given the order in which requests arrive.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5)
PREDICTION_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05, 0.10, ..., 1.0
MIRROR_HEADER = "X-Mirrored"
MAX_BODY_BYTES = 1 << 20


class KnobError(ValueError):
    """A knob name that does not exist or a value out of its range."""


@dataclass(frozen=True)
class Knobs:
    """How a simulated model behaves; every field can change at run time through /knobs."""

    latency_ms: float = 20.0
    latency_jitter: float = 0.2
    error_rate: float = 0.0
    prediction_mean: float = 0.5
    prediction_spread: float = 0.15
    conversion_rate: float = 0.1
    cold_requests: float = 0.0
    cold_latency_ms: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise KnobError(f"knob {name} must be a finite number, not {value!r}")
        if min(self.latency_ms, self.latency_jitter, self.prediction_spread, self.cold_requests,
               self.cold_latency_ms) < 0:
            raise KnobError("latency_ms, latency_jitter, prediction_spread and the cold knobs must be >= 0")
        for name in ("error_rate", "conversion_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise KnobError(f"knob {name} must be within [0, 1], not {getattr(self, name)}")
        if not 0.0 < self.prediction_mean < 1.0:
            raise KnobError(f"knob prediction_mean must be within (0, 1), not {self.prediction_mean}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def updated(self, **changes: float) -> Knobs:
        """A copy with `changes` applied, validated; an unknown name raises KnobError."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise KnobError(f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(self.names())}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}

    def cli_args(self) -> list[str]:
        """The command-line flags that start a server with these knobs."""
        args: list[str] = []
        for name, value in self.to_dict().items():
            args += [f"--{name.replace('_', '-')}", repr(value)]
        return args


def draw_latency(rng: random.Random, knobs: Knobs) -> float:
    """Seconds: lognormal with median `latency_ms` and sigma `latency_jitter`."""
    if knobs.latency_ms <= 0:
        return 0.0
    return knobs.latency_ms / 1000.0 * math.exp(rng.gauss(0.0, knobs.latency_jitter))


def draw_prediction(rng: random.Random, knobs: Knobs) -> float:
    """A score in [0, 1] from the Beta distribution with mean `prediction_mean` and standard
    deviation `prediction_spread` (capped at the largest one a Beta with that mean allows)."""
    mean, spread = knobs.prediction_mean, knobs.prediction_spread
    if spread <= 0:
        return mean
    concentration = max(mean * (1.0 - mean) / spread**2 - 1.0, 1e-3)
    return min(max(rng.betavariate(mean * concentration, (1.0 - mean) * concentration), 0.0), 1.0)


@dataclass(frozen=True)
class ServerConfig:
    model: str
    version: str
    port: int = 0
    host: str = "127.0.0.1"
    knobs: Knobs = field(default_factory=Knobs)
    seed: int | None = None
    port_file: Path | None = None


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]


class ModelServer:
    """The simulator: metrics, knobs and the HTTP server. `start()` serves on a background thread;
    `serve_forever()` serves on the calling one (the process entry point uses it)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.model, self.version = config.model, config.version
        self._knobs = config.knobs
        self._knobs_lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()
        # Requests served, as this server saw them: what a proxy really sent here (GET /stats).
        self.served = {"live": 0, "mirrored": 0, "cold_live": 0, "cold_mirrored": 0}
        self.registry = CollectorRegistry()
        self.requests = Counter("inference_request_total", "Inference requests by outcome.",
                                ["model", "version", "status"], registry=self.registry)
        self.duration = Histogram("inference_request_duration_seconds", "Inference request duration.",
                                  ["model", "version"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Histogram("model_prediction_value", "Predicted scores.", ["model", "version"],
                                     buckets=PREDICTION_BUCKETS, registry=self.registry)
        self.conversions = Counter("model_conversions_total", "Business conversions after a prediction.",
                                   ["model", "version"], registry=self.registry)
        self.queue_depth = Gauge("inference_request_queue_depth", "Requests in flight.", ["model"],
                                 registry=self.registry)
        # Every series exists from the start, so a query sees zeros rather than nothing.
        for status in ("ok", "error"):
            self.requests.labels(self.model, self.version, status)
        self.duration.labels(self.model, self.version)
        self.predictions.labels(self.model, self.version)
        self.conversions.labels(self.model, self.version)
        self.queue_depth.labels(self.model)
        self._http = _HTTPServer((config.host, config.port), _Handler, self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self._http.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def knobs(self) -> Knobs:
        return self._knobs

    def set_knobs(self, **changes: float) -> Knobs:
        with self._knobs_lock:
            self._knobs = self._knobs.updated(**changes)
            return self._knobs

    def request_rng(self) -> random.Random:
        with self._rng_lock:
            return random.Random(self._rng.getrandbits(64))

    def predict(self, payload: object, mirrored: bool) -> Outcome:
        """Serve one prediction: sleep, fail or answer, and record the metrics."""
        del payload  # the simulated model ignores its features
        knobs, rng = self._knobs, self.request_rng()
        kind = "mirrored" if mirrored else "live"
        with self._rng_lock:
            cold = self.served["live"] + self.served["mirrored"] < knobs.cold_requests
            self.served[kind] += 1
            if cold:
                self.served[f"cold_{kind}"] += 1
        started = time.perf_counter()
        depth = self.queue_depth.labels(self.model)
        depth.inc()
        try:
            time.sleep(knobs.cold_latency_ms / 1000.0 if cold else draw_latency(rng, knobs))
            if rng.random() < knobs.error_rate:
                self.requests.labels(self.model, self.version, "error").inc()
                return Outcome(500, {"error": "injected failure", "model": self.model, "version": self.version})
            prediction = draw_prediction(rng, knobs)
            self.requests.labels(self.model, self.version, "ok").inc()
            self.predictions.labels(self.model, self.version).observe(prediction)
            if not mirrored and rng.random() < knobs.conversion_rate:
                self.conversions.labels(self.model, self.version).inc()
            answer: dict[str, Any] = {"prediction": prediction, "model": self.model, "version": self.version}
            if cold:
                answer["cold"] = True  # what only a client sees: a gateway may not mark mirrored copies
            return Outcome(200, answer)
        finally:
            self.duration.labels(self.model, self.version).observe(time.perf_counter() - started)
            depth.dec()

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    def start(self) -> ModelServer:
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,),
                                        name=f"model-server-{self.version}", daemon=True)
        self._thread.start()
        self._announce()
        return self

    def serve_forever(self) -> None:
        self._announce()
        try:
            self._http.serve_forever(poll_interval=0.1)
        finally:
            self._http.server_close()

    def shutdown(self) -> None:
        """Stop serving; safe from another thread than the serving one."""
        self._http.shutdown()
        if self._thread is not None:
            self._thread.join(10)
            self._http.server_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _announce(self) -> None:
        if self.config.port_file is not None:
            # Written atomically once the socket listens: a reader never sees half a port.
            tmp = self.config.port_file.with_name(self.config.port_file.name + ".tmp")
            tmp.write_text(str(self.port))
            os.replace(tmp, self.config.port_file)
        log.info("model %s version %s listening on %s", self.model, self.version, self.url)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: ModelServer) -> None:
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a load generator reuses its connections
    # Headers and body leave in one segment: with Nagle on, keep-alive answers wait for the
    # client's delayed ACK (about 40 ms each).
    disable_nagle_algorithm = True
    wbufsize = -1  # handle_one_request flushes after every request
    server: _HTTPServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.app.metrics(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send_json(200, {"status": "ok"})
        elif path == "/knobs":
            self._send_json(200, self.server.app.knobs.to_dict())
        elif path == "/stats":
            self._send_json(200, dict(self.server.app.served))
        else:
            self._send_json(404, {"error": f"no route {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            payload = self._read_json()
        except ValueError as error:
            self._send_json(400, {"error": str(error)})
            return
        if path == "/predict":
            mirrored = self.headers.get(MIRROR_HEADER, "").strip().lower() == "true"
            outcome = self.server.app.predict(payload, mirrored)
            self._send_json(outcome.status, outcome.body)
        elif path == "/knobs":
            if not isinstance(payload, dict):
                self._send_json(400, {"error": "POST /knobs takes a JSON object"})
                return
            try:
                knobs = self.server.app.set_knobs(**payload)
            except (KnobError, TypeError) as error:
                self._send_json(400, {"error": str(error)})
                return
            self._send_json(200, knobs.to_dict())
        else:
            self._send_json(404, {"error": f"no route {path}"})

    def _read_json(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"body is not JSON: {error}") from None

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the test logs


@contextlib.contextmanager
def running(config: ServerConfig) -> Iterator[ModelServer]:
    """A server on a background thread of this process, for the duration of the block."""
    server = ModelServer(config).start()
    try:
        yield server
    finally:
        server.shutdown()


def serve(config: ServerConfig) -> None:
    """Serve on this thread until SIGTERM or SIGINT (the process entry point)."""
    server = ModelServer(config)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever, which runs on this very thread: ask from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


def parse_args(argv: Sequence[str] | None = None) -> ServerConfig:
    defaults = Knobs()
    parser = argparse.ArgumentParser(prog="python -m e2e.model_server",
                                     description="A model-server simulator for end-to-end tests.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see --port-file)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--port-file", type=Path, default=None,
                        help="write the listening port here (atomically) once the server accepts connections")
    for name, value in defaults.to_dict().items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=value)
    args = parser.parse_args(argv)
    try:
        knobs = Knobs(**{name: getattr(args, name) for name in Knobs.names()})
    except KnobError as error:
        parser.error(str(error))
    return ServerConfig(model=args.model, version=args.version, port=args.port, host=args.host, knobs=knobs,
                        seed=args.seed, port_file=args.port_file)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    # A process of its own: drop the `*_created` series (process-wide in prometheus_client), so the
    # exposition holds only the metric names the design asks for.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    serve(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
