"""A route-aware load generator. TEST TOOLING: it stands in for the mesh's data plane.

The local cluster has no Gateway controller and no Istio sidecars, so nothing would act on the
routes the operator writes. This generator does what the data plane would: it re-reads the live
HTTPRoute (or VirtualService) every ~0.5 s with the routers' own `read_route`, learns which
revision the `<rollout>-stable` and `<rollout>-candidate` Services select (their
`rollouts.mlops.dev/revision` selector), maps revisions to the fleet's model-server URLs, and
sends `POST /predict` at a target rate:

- each live request goes to the candidate with probability weight/100, else to the stable;
- independently, with probability mirror/100 a copy goes to the candidate with the header
  `X-Mirrored: true` (its answer is ignored, as a mesh ignores a mirror's answer).

It is bounded: `run(duration_s)`, or `start()` / `stop()` with a hard `max_duration_s` after
which it stops by itself. A failed request is counted, never raised.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
from kubernetes import client

from controller.routers import gatewayapi, istio
from controller.routers.base import RouterError
from controller.runtime.cache import REVISION_LABEL
from e2e.model_server import MIRROR_HEADER

log = logging.getLogger(__name__)

RouteKind = Literal["gatewayAPI", "istio"]
Role = Literal["stable", "candidate", "mirror"]
# Outcomes: "ok" (2xx), "error" (any other HTTP status), "failed" (no answer: refused, timeout),
# "no_backend" (the Service selects no revision with a running server: a mesh's 503),
# "no_route" (the route has not been read yet), "dropped" (every sender busy: the client sheds).
OUTCOMES = ("ok", "error", "failed", "no_backend", "no_route", "dropped")
NO_REVISION = "-"


class UrlSource(Protocol):
    def urls(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class RouteView:
    """What the data plane knows at one moment."""

    weight: int
    mirror: int
    stable_revision: str | None
    candidate_revision: str | None
    read_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class LoadStats:
    """Counters per (role, revision, outcome); role is "stable", "candidate" or "mirror"."""

    counts: Mapping[tuple[str, str, str], int]
    live_by_weight: Mapping[int, tuple[int, int]]  # route weight -> (live requests, sent to candidate)
    elapsed_s: float
    route: RouteView | None
    route_errors: int

    def total(self, role: str | None = None, revision: str | None = None, outcome: str | None = None) -> int:
        return sum(n for (r, rev, o), n in self.counts.items()
                   if (role is None or r == role) and (revision is None or rev == revision)
                   and (outcome is None or o == outcome))

    @property
    def live(self) -> int:
        """Live (non-mirrored) requests, whatever their outcome."""
        return self.total("stable") + self.total("candidate")

    @property
    def mirrored(self) -> int:
        return self.total("mirror")

    @property
    def candidate_share(self) -> float:
        """The observed split: the fraction of live requests routed to the candidate."""
        return self.total("candidate") / self.live if self.live else 0.0

    @property
    def mirror_share(self) -> float:
        """Mirrored copies per live request."""
        return self.mirrored / self.live if self.live else 0.0

    def by_revision(self, outcome: str | None = "ok") -> dict[str, int]:
        """revision -> requests it answered (live and mirrored) with `outcome` (None: any)."""
        counts: Counter[str] = Counter()
        for (_, revision, o), n in self.counts.items():
            if outcome is None or o == outcome:
                counts[revision] += n
        return dict(counts)


class RouteAwareLoadGenerator:
    """Send POST /predict at `rps` requests per second, split and mirrored as the live route says."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        route: tuple[RouteKind, str],
        rollout_name: str,
        fleet: UrlSource,
        rps: float,
        seed: int | None = None,
        max_duration_s: float = 600.0,
        refresh_interval: float = 0.5,
        request_timeout: float = 2.0,
        senders: int = 16,
        payload: Callable[[random.Random], dict[str, Any]] | None = None,
    ) -> None:
        kind, name = route
        if kind not in ("gatewayAPI", "istio"):
            raise ValueError(f"route kind must be 'gatewayAPI' or 'istio', not {kind!r}")
        if rps <= 0:
            raise ValueError("rps must be > 0")
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace, self.route_kind, self.route_name = namespace, kind, name
        self.rollout_name, self.fleet = rollout_name, fleet
        self.stable_service, self.candidate_service = f"{rollout_name}-stable", f"{rollout_name}-candidate"
        self.rps, self.max_duration_s = rps, max_duration_s
        self.refresh_interval, self.request_timeout, self.senders = refresh_interval, request_timeout, senders
        self.payload = payload or _features
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._live_by_weight: dict[int, list[int]] = {}
        self._route: RouteView | None = None
        self._route_errors = 0
        self.last_route_error: str | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None
        self._in_flight = threading.BoundedSemaphore(senders * 2)
        self._started_at: float | None = None
        self._stopped_at: float | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> RouteAwareLoadGenerator:
        if self._started_at is not None:
            raise RuntimeError("a load generator runs once; make a new one")
        self._http = httpx.Client(timeout=self.request_timeout,
                                  limits=httpx.Limits(max_connections=self.senders * 2,
                                                      max_keepalive_connections=self.senders * 2))
        self._pool = ThreadPoolExecutor(self.senders, thread_name_prefix="loadgen-send")
        self.refresh()  # the first requests already follow the live route
        self._started_at = time.monotonic()
        for target, name in ((self._refresh_loop, "loadgen-route"), (self._dispatch_loop, "loadgen-dispatch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> LoadStats:
        """Stop sending, wait for requests in flight (each bounded by its timeout), return the stats."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(self.request_timeout + 10)
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

    def __enter__(self) -> RouteAwareLoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._started_at is not None and not self._stopping.is_set()

    # ---- observation -----------------------------------------------------------------------
    def stats(self) -> LoadStats:
        with self._lock:
            counts = dict(self._counts)
            by_weight = {w: (v[0], v[1]) for w, v in self._live_by_weight.items()}
        end = self._stopped_at or time.monotonic()
        elapsed = end - self._started_at if self._started_at is not None else 0.0
        return LoadStats(counts, by_weight, elapsed, self._route, self._route_errors)

    def route_view(self) -> RouteView | None:
        return self._route

    def refresh(self) -> RouteView | None:
        """Read the route and the two Services now; on failure keep the last view and count it."""
        try:
            obj = self._read_route_object()
            reader = gatewayapi.read_route if self.route_kind == "gatewayAPI" else istio.read_route
            weight, mirror = reader(obj, self.stable_service, self.candidate_service)
            view = RouteView(weight, mirror, self._selected_revision(self.stable_service),
                             self._selected_revision(self.candidate_service))
        except (client.ApiException, RouterError, KeyError, OSError, ValueError) as error:
            self._route_errors += 1
            self.last_route_error = f"{type(error).__name__}: {error}"
            log.debug("route refresh failed: %s", self.last_route_error)
            return self._route
        self._route = view
        return view

    def _read_route_object(self) -> dict[str, Any]:
        if self.route_kind == "gatewayAPI":
            group, version, plural = gatewayapi.GROUP, gatewayapi.VERSION, gatewayapi.PLURAL
        else:
            group, version, plural = istio.GROUP, istio.VERSION, istio.PLURAL
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            group, version, self.namespace, plural, self.route_name, _request_timeout=(3, 5))
        return obj

    def _selected_revision(self, service: str) -> str | None:
        try:
            found = self.core.read_namespaced_service(service, self.namespace, _request_timeout=(3, 5))
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        selector = (found.spec.selector if found.spec else None) or {}
        return selector.get(REVISION_LABEL)

    # ---- the threads -----------------------------------------------------------------------
    def _deadline(self) -> float:
        assert self._started_at is not None
        return self._started_at + self.max_duration_s

    def _refresh_loop(self) -> None:
        while not self._stopping.wait(self.refresh_interval):
            if time.monotonic() >= self._deadline():
                self._stopping.set()
                break
            self.refresh()

    def _dispatch_loop(self) -> None:
        interval = 1.0 / self.rps
        next_at = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= self._deadline():
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
        view, urls = self._route, self.fleet.urls()
        payload = self.payload(self._rng)
        if view is None:
            self._count("stable", NO_REVISION, "no_route")
            return
        to_candidate = self._rng.random() * 100 < view.weight
        mirrored = self._rng.random() * 100 < view.mirror
        role: Role = "candidate" if to_candidate else "stable"
        revision = view.candidate_revision if to_candidate else view.stable_revision
        with self._lock:
            tally = self._live_by_weight.setdefault(view.weight, [0, 0])
            tally[0] += 1
            tally[1] += int(to_candidate)
        self._submit(role, revision, urls, payload, mirrored=False)
        if mirrored:
            self._submit("mirror", view.candidate_revision, urls, payload, mirrored=True)

    def _submit(self, role: Role, revision: str | None, urls: dict[str, str], payload: dict[str, Any],
                mirrored: bool) -> None:
        url = urls.get(revision) if revision is not None else None
        label = revision or NO_REVISION
        if url is None:
            self._count(role, label, "no_backend")
            return
        if not self._in_flight.acquire(blocking=False):
            self._count(role, label, "dropped")
            return
        assert self._pool is not None
        try:
            self._pool.submit(self._send, role, label, url, payload, mirrored)
        except RuntimeError:  # the pool is shutting down
            self._in_flight.release()
            self._count(role, label, "dropped")

    def _send(self, role: Role, revision: str, url: str, payload: dict[str, Any], mirrored: bool) -> None:
        assert self._http is not None
        headers = {MIRROR_HEADER: "true"} if mirrored else {}
        try:
            answer = self._http.post(f"{url}/predict", json=payload, headers=headers)
            outcome = "ok" if 200 <= answer.status_code < 300 else "error"
        except httpx.HTTPError:
            outcome = "failed"
        except Exception:  # never let a sender thread die on one request
            log.exception("unexpected error sending to %s", url)
            outcome = "failed"
        finally:
            self._in_flight.release()
        self._count(role, revision, outcome)

    def _count(self, role: str, revision: str, outcome: str) -> None:
        with self._lock:
            self._counts[(role, revision, outcome)] += 1


def _features(rng: random.Random) -> dict[str, Any]:
    return {"features": [round(rng.random(), 4) for _ in range(4)]}
