"""The runtime: watch events and deadlines in, bounded reconciles out.

Kopf's watches feed the cache and call `notify`; the engine's `wake_at` comes
back as a deadline on the work queue. Reconciles run in a thread pool sized to
the number of workers (the Kubernetes client is synchronous), never on the
event loop and never one thread per object. Any failure becomes a condition,
an Event and a retry with capped backoff; one bad object never delays another.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
import urllib3
from kubernetes import client
from pydantic import ValidationError

from controller import api, metrics
from controller.engine import failed
from controller.events import post_event, post_events
from controller.kube.cache import Cache, RolloutKey
from controller.kube.own_writes import ObjectVersion, OwnWrites
from controller.measure.addresses import AddressPolicy
from controller.measure.credentials import CredentialsUnavailable, SecretView
from controller.measure.measure import AnalysisIO, DefaultPrometheus
from controller.measure.prometheus import AnalysisInterrupted, PrometheusPool, SharedAnswers
from controller.notifications.delivery import Notifier
from controller.notifications.messages import Notification
from controller.reconciler import (
    Behind,
    Context,
    Outcome,
    RolloutObject,
    StaleSnapshot,
    parse_status,
    reconcile_object,
)
from controller.routers import RouterError
from controller.runtime.leases import shard_of
from controller.runtime.workqueue import Lane, WorkQueue
from controller.workloads import ComparatorUnavailable, OwnershipConflict

log = structlog.get_logger()

# Re-read and recompute this often when the object keeps changing under a reconcile.
STALE_RETRIES = 3
SECRET_TTL_SECONDS = 60.0
FINALIZED_MEMORY = 10_000


def _api_message(error: client.ApiException) -> str:
    """The apiserver's own words for a refused write (which field, which rule), one line."""
    try:
        message = str(json.loads(error.body or "{}").get("message", ""))
    except ValueError:
        message = ""
    return message[:300]


def failure_reason(error: BaseException) -> tuple[api.EventReason, str]:
    """A condition reason and a one-line detail for any failure of a reconcile."""
    if isinstance(error, client.ApiException):
        detail = f": {_api_message(error)}" if error.status in (400, 422) else ""
        return api.EventReason.API_ERROR, f"{error.status} {error.reason}{detail}"
    for kind, reason in ((RouterError, api.EventReason.ROUTE_ERROR),
                         (OwnershipConflict, api.EventReason.OWNERSHIP_CONFLICT),
                         (ComparatorUnavailable, api.EventReason.COMPARATOR_UNAVAILABLE)):
        if isinstance(error, kind):
            return reason, str(error)
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return api.EventReason.MALFORMED_STATUS, f"status cannot be read: {first['loc']} {first['msg']}"
    if isinstance(error, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return api.EventReason.API_UNREACHABLE, f"{type(error).__name__}: {error}"[:200]
    return api.EventReason.RECONCILE_ERROR, f"{type(error).__name__}: {error}"[:200]


@dataclass
class _Written:
    """Our last write of a rollout: the cache is behind it while it shows one of `superseded`."""

    superseded: set[str]
    body: dict[str, Any]


@dataclass
class _Deferred:
    """A status newer than the stored one, kept until its checkpoint: `stored` is the apiserver's."""

    stored: dict[str, Any]
    # As JSON text: a fifth of the dict's memory, and read only at the rollout's next look.
    status: bytes
    since: datetime


@dataclass
class ReconcileLoop:
    api_client: client.ApiClient
    cache: Cache
    pool: PrometheusPool
    workers: int = 8
    default_prometheus: DefaultPrometheus | None = None
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    owns: Callable[[RolloutKey], bool] = lambda _: True
    own_writes: OwnWrites = field(default_factory=OwnWrites)
    queue: WorkQueue[RolloutKey] = field(default_factory=WorkQueue)
    _written: dict[RolloutKey, _Written] = field(default_factory=dict)
    _deferred: dict[RolloutKey, _Deferred] = field(default_factory=dict)
    _interrupts: dict[RolloutKey, threading.Event] = field(default_factory=dict)
    _late: dict[RolloutKey, list[ObjectVersion]] = field(default_factory=dict)
    _finalized: dict[str, None] = field(default_factory=dict)  # uids, oldest first
    _secrets: dict[tuple[str, str], tuple[float, SecretView]] = field(default_factory=dict)
    _executor: ThreadPoolExecutor | None = None
    notifier: Notifier | None = None
    # The image shadow steps' comparators run from: the operator's own (None: no compare can run).
    comparator_image: str | None = None
    # Built-in templates' answers, shared by every rollout on a Prometheus.
    _shared: SharedAnswers = field(init=False)

    def __post_init__(self) -> None:
        self._shared = SharedAnswers(self.pool)

    # --- inputs -------------------------------------------------------------

    def notify(self, key: RolloutKey, source: ObjectVersion | None = None, action_requested: bool = False,
               lane: Lane = Lane.CHANGE) -> None:
        """Something the rollout reads changed (`source`: the object and version the watch saw).

        The echo of our own write wakes nothing. While the rollout's reconcile runs, its
        writes may not be recorded yet, so the check waits until that reconcile ends.
        A manual action interrupts a running analysis and goes in the first lane; an edit (the
        rollout or its route) goes ahead of routine work (its pods and Deployments moving, analysis ticks).
        """
        if action_requested:
            lane = Lane.DUE
        if action_requested and key in self._interrupts:
            self._interrupts[key].set()
        if source is not None and key in self._interrupts:
            self._late.setdefault(key, []).append(source)
            return
        if source is not None and self.own_writes.is_own(*source):
            self._caught_up(key, source)
            return
        self.queue.add(key, lane)

    def workload_moved(self, key: RolloutKey, source: ObjectVersion) -> None:
        """A Deployment of the rollout changed. Routine, except for a candidate the rollout waits on:
        its readiness starts a step (a route write), which must not wait behind a fleet's analysis ticks."""
        status = (self.cache.rollout(key) or {}).get("status") or {}
        state = status.get("state")
        waiting = state == api.RolloutState.DEPLOYING or (state == api.RolloutState.RUNNING
                                                           and not status.get("candidateReady"))
        self.notify(key, source, lane=Lane.CHANGE if waiting else Lane.ROUTINE)

    def _caught_up(self, key: RolloutKey, echo: ObjectVersion) -> None:
        """The cache now holds our last write of the rollout: the copy kept for it can go."""
        written = self._written.get(key)
        if echo[0] == api.KIND and written is not None and written.body["metadata"].get("resourceVersion") == echo[3]:
            del self._written[key]

    def notify_shard(self, shard: int, shards: int, watched_alone: bool = False) -> None:
        """This replica now holds `shard`: reconcile every rollout in it, those with a manual action
        waiting first. `watched_alone`: the cache holds that shard's rollouts only (a static shard)."""
        for key in self.cache.rollout_keys():
            if watched_alone or shard_of(*key, shards) == shard:
                body = self.cache.rollout(key) or {}
                action = api.ACTION_ANNOTATION in (body.get("metadata", {}).get("annotations") or {})
                self.queue.add(key, Lane.DUE if action else Lane.CHANGE)

    async def run(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="reconcile")
        self.notifier = Notifier(asyncio.get_running_loop(), self._secret_data, self._notification_failed)
        try:
            await self.queue.run(self.handle, self.workers)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
            await self.notifier.close()

    # --- one key --------------------------------------------------------------

    def _snapshot(self, key: RolloutKey) -> dict[str, Any] | None:
        cached = self.cache.rollout(key)
        written = self._written.get(key)
        if cached is None or written is None:
            self._written.pop(key, None)
            return cached
        if cached["metadata"].get("resourceVersion") in written.superseded:
            return written.body  # The cache has not caught up with our own write yet.
        del self._written[key]
        return cached

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def handle(self, key: RolloutKey) -> None:
        if not self.owns(key):
            return
        body = self._snapshot(key)
        if body is None:
            self.forget(key)
            return
        if body["metadata"].get("uid") in self._finalized:
            return  # Finalized already; the cache has not seen it go yet.
        interrupt = self._interrupts.setdefault(key, threading.Event())
        try:
            for _ in range(STALE_RETRIES):
                interrupt.clear()
                started = time.perf_counter()
                try:
                    outcome: Outcome = await self._in_thread(self._reconcile, key, body, interrupt)
                except (StaleSnapshot, AnalysisInterrupted):
                    body = await self._in_thread(self._read_fresh, key)
                    if body is None:
                        self.forget(key)
                        return
                    continue
                finally:
                    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
                self._succeeded(key, body, outcome)
                return
            self.queue.add(key)  # Still contended: go round the queue, behind the others.
        except Exception as error:
            await self._failed(key, body, error)
        finally:
            self._interrupts.pop(key, None)
            late = self._late.pop(key, [])
            echoes = [source for source in late if self.own_writes.is_own(*source)]
            for echo in echoes:
                self._caught_up(key, echo)
            if len(echoes) < len(late):
                self.queue.add(key)

    def _reconcile(self, key: RolloutKey, body: dict[str, Any], interrupt: threading.Event) -> Outcome:
        ctx = Context(self.api_client, self.cache, self.own_writes,
                      AnalysisIO(self.pool, self._read_secret, interrupt.is_set, self.default_prometheus,
                                 self.addresses, self._shared),
                      self.notifier.submit if self.notifier else lambda _: None, self.comparator_image)
        deferred = self._deferred.get(key)
        if deferred is None or body.get("status") != deferred.stored:
            # Someone else wrote the status since (or nothing waits): the stored one is the truth.
            self._deferred.pop(key, None)
            return reconcile_object(ctx, body)
        return reconcile_object(ctx, {**body, "status": json.loads(deferred.status)},
                                behind=Behind(deferred.stored, deferred.since))

    def _secret_data(self, namespace: str, name: str) -> dict[str, str]:
        try:
            return self._read_secret(namespace, name).data
        except CredentialsUnavailable as error:
            raise LookupError(str(error)) from None

    def _notification_failed(self, notification: Notification, why: str) -> None:
        body = {"metadata": {"namespace": notification.namespace, "name": notification.name,
                             "uid": notification.uid}}
        post_event(self.api_client, body, "Warning", api.EventReason.NOTIFICATION_FAILED, why)

    def _read_fresh(self, key: RolloutKey) -> dict[str, Any] | None:
        """The rollout as the apiserver has it now (None: gone). A list by name, not a get: the
        operator's RBAC grants ModelRollouts list and watch, and this is the only read outside them."""
        found: dict[str, Any] = client.CustomObjectsApi(self.api_client).list_namespaced_custom_object(
            api.GROUP, api.VERSION, key[0], api.PLURAL, field_selector=f"metadata.name={key[1]}")  # type: ignore[assignment]
        items: list[dict[str, Any]] = found.get("items") or []
        return items[0] if items else None

    def _read_secret(self, namespace: str, name: str) -> SecretView:
        """Analysis credentials, read at most once a minute (Secrets are not watched: least privilege)."""
        cached = self._secrets.get((namespace, name))
        if cached is not None and time.monotonic() - cached[0] < SECRET_TTL_SECONDS:
            return cached[1]
        try:
            secret = client.CoreV1Api(self.api_client).read_namespaced_secret(name, namespace)
        except client.ApiException as error:
            if error.status in (403, 404):
                raise CredentialsUnavailable(f"Secret {namespace}/{name} (analysis.prometheus.secretRef) is "
                                    f"{'missing' if error.status == 404 else 'not readable'}") from None
            raise
        view = SecretView({key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()},
                          dict(secret.metadata.annotations or {}) if secret.metadata else {})
        self._secrets[(namespace, name)] = (time.monotonic(), view)
        return view

    def _succeeded(self, key: RolloutKey, before: dict[str, Any], outcome: Outcome) -> None:
        self.queue.succeeded(key)
        metrics.RECONCILES.labels("ok").inc()
        if outcome.finalized:
            self.forget(key)
            self._finalized[before["metadata"].get("uid", "")] = None
            while len(self._finalized) > FINALIZED_MEMORY:
                self._finalized.pop(next(iter(self._finalized)))
            return
        if outcome.deferred is not None:
            kept = self._deferred.get(key)
            held = json.dumps(outcome.deferred, separators=(",", ":")).encode()
            self._deferred[key] = (_Deferred(kept.stored, held, kept.since) if kept else
                                   _Deferred(before.get("status") or {}, held, datetime.now(UTC)))
        elif outcome.written is not None:
            self._deferred.pop(key, None)
        if outcome.written is not None:
            old = self._written.get(key)
            superseded = (old.superseded if old else set()) | outcome.superseded
            self._written[key] = _Written(superseded, outcome.written)
        if outcome.transition is not None:
            metrics.export_rollout(key, outcome.transition.status)
            wake_at = outcome.transition.wake_at
            if wake_at is not None:
                delay = (wake_at - datetime.now(UTC)).total_seconds()
                self.queue.add_at(key, self.queue.clock() + max(0.0, delay),
                                  Lane.ROUTINE if outcome.transition.routine else Lane.DUE)

    async def _failed(self, key: RolloutKey, body: dict[str, Any], error: Exception) -> None:
        metrics.RECONCILES.labels("error").inc()
        reason, detail = failure_reason(error)
        delay = self.queue.failed(key)
        log.warning("reconcile failed; retrying", namespace=key[0], name=key[1], reason=reason, detail=detail,
                    retry_in=round(delay, 2), failures=self.queue.failures(key))
        try:
            await self._in_thread(self._report, body, reason, detail)
        except Exception as report_error:
            log.warning("failure not recorded", namespace=key[0], name=key[1], error=type(report_error).__name__)

    def _report(self, body: dict[str, Any], reason: api.EventReason, detail: str) -> None:
        """Progressing=False with the reason, and an Event when the failure is new."""
        try:
            status = parse_status(body)
        except ValidationError:
            status = api.ModelRolloutStatus()  # Only conditions and message are written back.
        transition = failed(status, reason, detail, datetime.now(UTC))
        rollout = RolloutObject(Context(self.api_client, self.cache, self.own_writes,
                                        AnalysisIO(self.pool, self._read_secret,
                                                   default_prometheus=self.default_prometheus,
                                                   addresses=self.addresses)), body)
        post_events(self.api_client, body, transition.actions)
        dumped = transition.status.model_dump(mode="json", by_alias=True)
        with contextlib.suppress(StaleSnapshot):  # Newer state exists; the retry reads it.
            rollout.patch_status({"conditions": dumped["conditions"], "message": dumped["message"]})

    def forget(self, key: RolloutKey) -> None:
        self.queue.forget(key)
        self._written.pop(key, None)
        self._deferred.pop(key, None)
        metrics.forget_rollout(key)
