"""A load generator: clients that send every request to one address, the gateway's.

It knows nothing of routes, Services or revisions: the gateway (Envoy, `e2e.envoy`, or nginx,
`e2e.gateway`) splits, mirrors and routes by header. It counts each answer by the version the
answering server names in its body, so a split is measured where it lands, never computed, and the
answers a server marks `cold` (a user served by a model still loading). Mirrored copies never come
back here: Envoy counts them (`EnvoyRoute.mirrored`).

It is bounded: `run(duration_s)`, or `start()` / `stop()` with a hard `max_duration_s` after
which it stops by itself. A failed request is counted, never raised.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

# Outcomes: "ok" (2xx), "error" (any other HTTP status), "failed" (no answer: refused, timeout),
# "dropped" (every sender busy: the client sheds).
OUTCOMES = ("ok", "error", "failed", "dropped")
UNKNOWN = "-"  # no answer, or an answer that names no version (the gateway's own 404/5xx)


def _features(rng: random.Random) -> dict[str, Any]:
    return {"features": [round(rng.gauss(0.0, 1.0), 4) for _ in range(4)]}


def _body(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _version(body: dict[str, Any]) -> str:
    return str(body.get("version") or body.get("model_version") or UNKNOWN)


@dataclass(frozen=True)
class LoadStats:
    """Answers per (version that answered, outcome)."""

    counts: Mapping[tuple[str, str], int]
    elapsed_s: float
    cold: Mapping[str, int] = field(default_factory=dict)  # answers marked cold, by version

    def total(self, version: str | None = None, outcome: str | None = None) -> int:
        return sum(n for (v, o), n in self.counts.items()
                   if (version is None or v == version) and (outcome is None or o == outcome))

    @property
    def sent(self) -> int:
        return self.total()

    def by_version(self, outcome: str | None = "ok") -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (version, o), n in self.counts.items():
            if outcome is None or o == outcome:
                counts[version] += n
        return dict(counts)

    def share(self, version: str) -> float:
        """The fraction of answered requests that `version` answered."""
        answered = sum(n for (v, _), n in self.counts.items() if v != UNKNOWN)
        return self.total(version) / answered if answered else 0.0


class LoadGenerator:
    """POST `path` on `url` at `rps` requests per second."""

    def __init__(
        self,
        url: str,
        rps: float,
        seed: int | None = None,
        max_duration_s: float = 600.0,
        request_timeout: float = 2.0,
        senders: int = 16,
        path: str = "/predict",
        payload: Callable[[random.Random], dict[str, Any]] | None = None,
        headers: Callable[[random.Random], dict[str, str]] | None = None,
        version_of: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        """`version_of(answer body)` names the version that answered (default: its `version` or
        `model_version`)."""
        if rps <= 0:
            raise ValueError("rps must be > 0")
        self.url, self.path, self.rps, self.max_duration_s = url.rstrip("/"), path, rps, max_duration_s
        self.request_timeout, self.senders = request_timeout, senders
        self.payload, self.headers = payload or _features, headers or (lambda _: {})
        self.version_of = version_of or _version
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._cold: Counter[str] = Counter()
        # (when it was answered, seconds it took) of every answered request, oldest first, bounded.
        self._latencies: deque[tuple[float, float]] = deque(maxlen=200_000)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None
        self._in_flight = threading.BoundedSemaphore(senders * 2)
        self._started_at: float | None = None
        self._stopped_at: float | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> LoadGenerator:
        if self._started_at is not None:
            raise RuntimeError("a load generator runs once; make a new one")
        self._http = httpx.Client(timeout=self.request_timeout,
                                  limits=httpx.Limits(max_connections=self.senders * 2,
                                                      max_keepalive_connections=self.senders * 2))
        self._pool = ThreadPoolExecutor(self.senders, thread_name_prefix="loadgen-send")
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._dispatch_loop, name="loadgen-dispatch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> LoadStats:
        """Stop sending, wait for requests in flight (each bounded by its timeout), return the stats."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.request_timeout + 10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
        if self._http is not None:
            self._http.close()
        if self._stopped_at is None and self._started_at is not None:
            self._stopped_at = time.monotonic()
        return self.stats()

    def run(self, duration_s: float) -> LoadStats:
        """Send for `duration_s` seconds (at most `max_duration_s`), then stop; return the stats."""
        self.start()
        try:
            self._stopping.wait(min(duration_s, self.max_duration_s))
        finally:
            stats = self.stop()
        return stats

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._started_at is not None and not self._stopping.is_set()

    def stats(self) -> LoadStats:
        with self._lock:
            counts, cold = dict(self._counts), dict(self._cold)
        end = self._stopped_at or time.monotonic()
        elapsed = end - self._started_at if self._started_at is not None else 0.0
        return LoadStats(counts, elapsed, cold)

    # ---- sending ---------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        assert self._started_at is not None
        deadline = self._started_at + self.max_duration_s
        interval = 1.0 / self.rps
        next_at = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= deadline:
                log.info("load generator reached max_duration_s=%s; stopping", self.max_duration_s)
                self._stopping.set()
                break
            if next_at > now:
                self._stopping.wait(next_at - now)
                continue
            # After a stall, send what is due but never a burst of more than one second's worth.
            next_at = max(next_at + interval, now - 1.0)
            self._dispatch_one()

    def _dispatch_one(self) -> None:
        payload, headers = self.payload(self._rng), self.headers(self._rng)
        if not self._in_flight.acquire(blocking=False):
            self._count(UNKNOWN, "dropped")
            return
        assert self._pool is not None
        try:
            self._pool.submit(self._send, payload, headers)
        except RuntimeError:  # the pool is shutting down
            self._in_flight.release()
            self._count(UNKNOWN, "dropped")

    def _send(self, payload: dict[str, Any], headers: dict[str, str]) -> None:
        assert self._http is not None
        version, cold = UNKNOWN, False
        try:
            sent = time.monotonic()
            answer = self._http.post(f"{self.url}{self.path}", json=payload, headers=headers)
            answered = time.monotonic()
            with self._lock:
                self._latencies.append((answered, answered - sent))
            body = _body(answer)
            version, cold = self.version_of(body) or UNKNOWN, body.get("cold") is True
            outcome = "ok" if 200 <= answer.status_code < 300 else "error"
        except httpx.HTTPError:
            outcome = "failed"
        except Exception:  # never let a sender thread die on one request
            log.exception("unexpected error sending to %s", self.url)
            outcome = "failed"
        finally:
            self._in_flight.release()
        self._count(version, outcome, cold)

    def latencies(self, since: float) -> list[float]:
        """Seconds each request answered after `since` (time.monotonic()) took, as its client saw it."""
        with self._lock:
            return [took for when, took in self._latencies if when >= since]

    def _count(self, version: str, outcome: str, cold: bool = False) -> None:
        with self._lock:
            self._counts[(version, outcome)] += 1
            if cold:
                self._cold[version] += 1
