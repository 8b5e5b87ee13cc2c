"""One reconcile of one ModelRollout, one way through: observe the cache, plan what to measure (engine),
measure it (one port), decide (engine), execute the actions, commit the status.

Reads come from the watch-fed cache; only writes reach the API. The status is
written last, with the resourceVersion it was computed from: a crash anywhere
before it repeats the same transition from the same status (every action is
idempotent), and a stale snapshot loses the race instead of overwriting newer state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client
from pydantic import ValidationError

from controller import api
from controller.capacity import pod_gpus
from controller.engine import (
    EmitEvent,
    Observations,
    RouteHandback,
    RouteRefusal,
    Transition,
    decide,
    finalize,
    invalid_spec,
    plan,
)
from controller.engine.checkpoints import worth_writing
from controller.engine.execute import execute
from controller.events import post_events
from controller.kube.cache import Cache, route_key
from controller.kube.own_writes import OwnWrites
from controller.measure.measure import AnalysisIO, Measurer, RolloutRef
from controller.notifications.messages import Notification, notifications
from controller.routers import HeaderRoute, RouterError, TrafficRouter, gatewayapi
from controller.routers.gatewayapi import GatewayAPIRouter
from controller.routers.istio import IstioRouter
from controller.workloads import ComparatorUnavailable, Workloads, revision_of

log = structlog.get_logger()

FINALIZER = f"{api.GROUP}/finalizer"
KIND = api.KIND


class StaleSnapshot(RuntimeError):
    """The object changed since the snapshot this reconcile started from: re-read and recompute."""


@dataclass(frozen=True)
class Context:
    api_client: client.ApiClient
    cache: Cache
    own_writes: OwnWrites
    analysis: AnalysisIO
    # Hands a notification to delivery; never blocks.
    notify: Callable[[Notification], None] = lambda _: None
    # The image shadow steps' comparators run from (the operator's own); None: no compare can run.
    comparator_image: str | None = None


@dataclass
class Outcome:
    transition: Transition | None
    # The object as our last write left it (None when we wrote nothing), so the runtime
    # never acts on a cache entry older than its own write.
    written: dict[str, Any] | None = None
    finalized: bool = False
    # Versions of the object older than `written`: a cache still showing one of them is behind.
    superseded: set[str] = field(default_factory=set)
    # A new status held in memory until its checkpoint (`engine.checkpoints`), not written.
    deferred: dict[str, Any] | None = None


@dataclass(frozen=True)
class Behind:
    """The body's status is the one kept in memory; the apiserver holds `stored`, since `since`."""

    stored: dict[str, Any]
    since: datetime


class RolloutObject:
    """Writes to the ModelRollout itself, each conditional on the resourceVersion last seen."""

    def __init__(self, ctx: Context, body: dict[str, Any]) -> None:
        self.ctx = ctx
        self.body = body
        self.custom = client.CustomObjectsApi(ctx.api_client)
        meta = body["metadata"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.wrote = False
        self.deferred: dict[str, Any] | None = None
        # Every version this reconcile saw or wrote before the last: older than what it leaves.
        self.versions: list[str] = [str(body["metadata"].get("resourceVersion", ""))]

    def _coordinates(self) -> tuple[str, str, str, str, str]:
        return api.GROUP, api.VERSION, self.namespace, api.PLURAL, self.name

    def _stored(self, obj: Any) -> None:
        self.body = obj
        self.wrote = True
        version = obj["metadata"].get("resourceVersion")
        self.versions.append(str(version))
        self.ctx.own_writes.record(KIND, self.namespace, self.name, version)

    def superseded(self) -> set[str]:
        return set(self.versions[:-1])

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> None:
        try:
            self._stored(method(*self._coordinates(), *args, **kwargs))
        except client.ApiException as error:
            if error.status == 409:
                raise StaleSnapshot(f"{self.namespace}/{self.name} changed; re-reading") from None
            raise

    def write_status(self, status: dict[str, Any]) -> None:
        self._call(self.custom.replace_namespaced_custom_object_status, {**self.body, "status": status})

    def patch_metadata(self, metadata: dict[str, Any]) -> None:
        rv = self.body["metadata"].get("resourceVersion")
        self._call(self.custom.patch_namespaced_custom_object,
                   {"metadata": {**metadata, "resourceVersion": rv}})

    def patch_status(self, status: dict[str, Any]) -> None:
        rv = self.body["metadata"].get("resourceVersion")
        self._call(self.custom.patch_namespaced_custom_object_status,
                   {"metadata": {"resourceVersion": rv}, "status": status})


def _router(ctx: Context, body: dict[str, Any], spec: api.ModelRolloutSpec) -> TrafficRouter | None:
    """The route object's router; None without a mesh, where the engine sizes replicas instead."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    stable_svc, candidate_svc = f"{name}-stable", f"{name}-candidate"
    # The same key the route index files it under.
    key = route_key(body["spec"], namespace)

    def cached() -> dict[str, Any] | None:
        return ctx.cache.route(key) if key else None

    routing = spec.traffic_routing
    if routing.gateway_api is not None:
        return GatewayAPIRouter(ctx.api_client, namespace, routing.gateway_api.http_route, stable_svc,
                                candidate_svc, spec.service.port, routing.gateway_api.rule_name, cached,
                                ctx.own_writes)
    if routing.istio is not None:
        return IstioRouter(ctx.api_client, namespace, routing.istio.virtual_service, stable_svc, candidate_svc,
                           spec.service.port, routing.istio.route_name, cached, ctx.own_writes)
    return None


def parse_status(body: dict[str, Any]) -> api.ModelRolloutStatus:
    return api.ModelRolloutStatus.model_validate(body.get("status") or {})


def reconcile_object(ctx: Context, body: dict[str, Any], now: datetime | None = None,
                     behind: Behind | None = None) -> Outcome:
    now = now or datetime.now(UTC)
    rollout = RolloutObject(ctx, body)
    meta = body["metadata"]
    generation = meta.get("generation", 1)
    status = parse_status(body)
    try:
        spec = api.ModelRolloutSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        message = "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        if meta.get("deletionTimestamp"):
            _drop_finalizer(rollout)  # Nothing we could route for an invalid spec: let it go.
            return Outcome(None, rollout.body, finalized=True)
        transition = invalid_spec(status, generation, message, now)
        _commit(rollout, status, transition)
        post_events(ctx.api_client, rollout.body, transition.actions)
        return Outcome(transition, rollout.body if rollout.wrote else None,
                       superseded=rollout.superseded())

    deleting = bool(meta.get("deletionTimestamp"))
    workloads = Workloads(ctx.api_client, ctx.cache, ctx.own_writes, body, spec, adopt=not deleting)
    if deleting:
        return _finalize(ctx, rollout, spec, status, workloads)
    if FINALIZER not in (meta.get("finalizers") or []):
        rollout.patch_metadata({"finalizers": [*(meta.get("finalizers") or []), FINALIZER]})

    router = _router(ctx, body, spec)
    observations = _observe(ctx, body, spec, status, workloads, router)
    planned = plan(spec, status, observations, now)
    readings = _measurer(ctx, body, spec, observations.template_revision).measure(planned)
    transition = decide(spec, generation, status, observations, planned, readings, now)
    execute(transition.actions, ClusterTarget(workloads, router, spec, ctx.comparator_image))
    _commit(rollout, status, transition, behind, now)
    # Events and notifications only once the status that records the transition is stored: a
    # conflict recomputes the transition, and they must not be told twice.
    post_events(ctx.api_client, rollout.body, transition.actions)
    for notification in notifications(rollout.body, spec, status, transition.status, transition.actions,
                                      datetime.now(UTC)):
        ctx.notify(notification)
    return Outcome(transition, rollout.body if rollout.wrote else None,
                   superseded=rollout.superseded(), deferred=rollout.deferred)


def _observe(ctx: Context, body: dict[str, Any], spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus,
             workloads: Workloads, router: TrafficRouter | None) -> Observations:
    """What the cache shows of the rollout's world."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    gateway_api = spec.traffic_routing.gateway_api
    route = ctx.cache.route((gatewayapi.PLURAL, namespace, gateway_api.http_route)) if gateway_api else None
    revision = revision_of(spec.template)
    stable_state = workloads.observe(status.stable_revision or revision)
    candidate_state = workloads.observe(status.candidate_revision if revision == status.candidate_revision else None)
    return Observations(
        template_revision=revision,
        stable_ready=stable_state.fully_ready,
        candidate_ready=candidate_state.fully_ready,
        candidate_any_ready=candidate_state.ready >= 1,
        candidate_ready_replicas=candidate_state.ready,
        candidate_exists=candidate_state.exists,
        candidate_unschedulable=candidate_state.unschedulable,
        stable_unschedulable=stable_state.unschedulable,
        route_refusal=_refusal(router),
        route_serving=gatewayapi.serving(route, ctx.cache.gateway, (f"{name}-stable", f"{name}-candidate"))
        if route is not None else None,
        candidate_endpoints=ctx.cache.ready_endpoints(namespace, f"{name}-candidate"),
        requested_action=(body["metadata"].get("annotations") or {}).get(api.ACTION_ANNOTATION),
    )


def _measurer(ctx: Context, body: dict[str, Any], spec: api.ModelRolloutSpec, template_revision: str) -> Measurer:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def gpus(revision: str) -> int:
        """GPUs serving `revision` now; for the template's revision, before the cache shows its
        Deployment, the size the template asks for."""
        view = ctx.cache.deployment(namespace, name, revision)
        if view is not None:
            return view.replicas * view.gpus_per_pod
        return spec.replicas * pod_gpus(spec.template) if revision == template_revision else 0

    def shortfall(replicas: int) -> str | None:
        return ctx.cache.capacity_shortfall(spec.template.get("spec") or {}, replicas)

    return Measurer(ctx.analysis, spec, RolloutRef(spec.model, namespace, name), shortfall, gpus)


def _refusal(router: TrafficRouter | None) -> RouteRefusal | None:
    """Why the route's rule is not ours to write; None when it is, or when the route is missing
    (the write then says so)."""
    if router is None:
        return None
    try:
        found = router.access()
    except RouterError:
        return None
    return None if found.writable else RouteRefusal(found.state, found.message)


def _handback(router: TrafficRouter | None, stable: str) -> RouteHandback | None:
    if router is None:
        return None
    try:
        preview = router.preview_release()
    except RouterError as error:
        return RouteHandback(False, f"the route cannot be read ({error}): nothing shows that it no longer needs them")
    if preview.access == api.RouteAccess.TAKEN_BACK and not preview.names_our_services:
        return RouteHandback(False)  # Its owner routes elsewhere now: nothing here needs our Services.
    if preview.access not in (api.RouteAccess.MANAGED, api.RouteAccess.HANDED):
        return RouteHandback(False, f"the route is not the rollout's to give back ({preview.access.value})")
    if preview.names_our_services:
        return RouteHandback(True, f"{preview.described} still sends traffic to Service {stable}: take it out "
                                   "of the route, then delete them")
    return RouteHandback(True)


class ClusterTarget:
    """The engine's actions, carried out on the cluster: workloads, Services, the comparator and the route."""

    def __init__(self, workloads: Workloads, router: TrafficRouter | None, spec: api.ModelRolloutSpec | None = None,
                 comparator_image: str | None = None) -> None:
        self.workloads = workloads
        self.router = router
        self.spec = spec
        self.comparator_image = comparator_image

    def revision_exists(self, revision: str) -> bool:
        return self.workloads.observe(revision).exists

    def ensure_revision(self, revision: str, replicas: int) -> None:
        self.workloads.ensure_revision(revision, replicas)

    def scale_revision(self, revision: str, replicas: int) -> None:
        self.workloads.scale_revision(revision, replicas)

    def delete_revision(self, revision: str) -> None:
        self.workloads.delete_revision(revision)

    def orphan_revision(self, revision: str) -> None:
        self.workloads.orphan_revision(revision)

    def select_services(self, stable: str, candidate: str) -> None:
        self.workloads.select_services(stable, candidate)

    def set_route(self, weight: int, mirror: int, header: tuple[str, str] | None, compare: bool = False) -> None:
        if self.router is None:
            raise RouterError("trafficRouting.replicas has no route to write")  # the engine never asks
        self.router.set_route(weight, mirror, HeaderRoute(*header) if header else None, compare)

    def ensure_comparator(self, step: int) -> None:
        assert self.spec is not None
        shadow = self.spec.strategy.steps[step].shadow
        assert shadow is not None and shadow.compare is not None, "the engine compares only in such a step"
        if not self.comparator_image:
            raise ComparatorUnavailable(
                f"step {step + 1} compares answers, and the operator has no image for its comparator: run it with "
                "--comparator-image (the chart sets it to the operator's own image)")
        self.workloads.ensure_comparator(shadow.compare, self.comparator_image)

    def remove_comparator(self) -> None:
        self.workloads.remove_comparator()

    def release_route(self) -> None:
        if self.router is not None:
            self.router.release()


def _finalize(ctx: Context, rollout: RolloutObject, spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus,
              workloads: Workloads) -> Outcome:
    if FINALIZER not in (rollout.body["metadata"].get("finalizers") or []):
        return Outcome(None, finalized=True)
    router = _router(ctx, rollout.body, spec)
    actions = finalize(spec, status, _handback(router, f"{rollout.name}-stable"))
    execute(actions, ClusterTarget(workloads, router))
    _drop_finalizer(rollout)
    post_events(ctx.api_client, rollout.body, actions)
    return Outcome(None, rollout.body, finalized=True)


def _drop_finalizer(rollout: RolloutObject) -> None:
    kept = [f for f in rollout.body["metadata"].get("finalizers") or [] if f != FINALIZER]
    try:
        rollout.patch_metadata({"finalizers": kept or None})
    except client.ApiException as error:
        if error.status != 404:  # Gone already: someone else removed the finalizer.
            raise


def _commit(rollout: RolloutObject, old: api.ModelRolloutStatus, transition: Transition,
            behind: Behind | None = None, now: datetime | None = None) -> None:
    """Store the transition's status, then drop the action annotation it took: a crash in between
    leaves the annotation, never an action taken and lost. A status that changed only in evidence
    waits in memory for its checkpoint (`behind`: what is stored, when the operator's copy is newer)."""
    new = transition.status.model_dump(mode="json", by_alias=True)
    dumped = old.model_dump(mode="json", by_alias=True)
    changed = new != dumped or not rollout.body.get("status")
    # The engine re-asserts the route and the Deployments at every pass; only an Event marks news.
    news = transition.takes_request or any(isinstance(action, EmitEvent) for action in transition.actions)
    if changed and not news and rollout.body.get("status"):
        stored = behind.stored if behind else dumped
        behind_seconds = ((now or datetime.now(UTC)) - behind.since).total_seconds() if behind else 0.0
        if not worth_writing(stored, new, behind_seconds):
            rollout.deferred = new
            return
    if changed:
        # The whole status in one conditional replace: a merge patch would keep keys the new status
        # dropped, and an unconditional write could overwrite a newer one.
        rollout.write_status(new)
    if transition.takes_request:
        rollout.patch_metadata({"annotations": {api.ACTION_ANNOTATION: None}})


__all__ = ["Behind", "Context", "Outcome", "RolloutObject", "StaleSnapshot", "parse_status", "reconcile_object"]
