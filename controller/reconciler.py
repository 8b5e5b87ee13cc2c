"""One reconcile of one ModelRollout: observe the cache, run the pure engine, carry out its actions.

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
from controller.analysis.runner import AnalysisIO, Run, analyse, current_analysis
from controller.analysis.serving_cost import measure_cost
from controller.analysis.warmup import read_warmup
from controller.capacity import pod_gpus
from controller.engine import (
    Observations,
    RouteHandback,
    RouteRefusal,
    Transition,
    finalize,
    invalid_spec,
    reconcile,
)
from controller.engine.execute import execute
from controller.engine.routes import candidate_replicas
from controller.events import post_event, post_events
from controller.notifications.messages import Notification, notifications
from controller.routers import HeaderRoute, RouterError, TrafficRouter
from controller.routers.gatewayapi import GatewayAPIRouter
from controller.routers.istio import IstioRouter
from controller.runtime.cache import Cache, route_key
from controller.runtime.own_writes import OwnWrites
from controller.workloads import Workloads, revision_of

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


@dataclass
class Outcome:
    transition: Transition | None
    # The object as our last write left it (None when we wrote nothing), so the runtime
    # never acts on a cache entry older than its own write.
    written: dict[str, Any] | None = None
    finalized: bool = False
    # Versions of the object older than `written`: a cache still showing one of them is behind.
    superseded: set[str] = field(default_factory=set)


class RolloutObject:
    """Writes to the ModelRollout itself, each conditional on the resourceVersion last seen."""

    def __init__(self, ctx: Context, body: dict[str, Any]) -> None:
        self.ctx = ctx
        self.body = body
        self.custom = client.CustomObjectsApi(ctx.api_client)
        meta = body["metadata"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.wrote = False
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


def _take_action_annotation(rollout: RolloutObject, status: api.ModelRolloutStatus) -> api.ModelRolloutStatus:
    """Move a manual action from the annotation into status.pendingAction, then drop the annotation.

    In that order: a crash in between leaves the action pending exactly once.
    """
    action = (rollout.body["metadata"].get("annotations") or {}).get(api.ACTION_ANNOTATION)
    if not action or status.pending_action is not None:
        return status  # One at a time: a newer action waits on the object until the pending one is applied.
    verb = action.split("@", 1)[0].strip()
    if verb in api.ACTIONS:
        status = status.model_copy(update={"pending_action": api.Action(verb)})
        rollout.write_status(status.model_dump(mode="json", by_alias=True))
    else:
        post_event(rollout.ctx.api_client, rollout.body, "Warning", "UnknownAction",
                   f"{action!r} is not one of {', '.join(api.ACTIONS)}")
    rollout.patch_metadata({"annotations": {api.ACTION_ANNOTATION: None}})
    return status


def parse_status(body: dict[str, Any]) -> api.ModelRolloutStatus:
    return api.ModelRolloutStatus.model_validate(body.get("status") or {})


def reconcile_object(ctx: Context, body: dict[str, Any], now: datetime | None = None) -> Outcome:
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
        _finish(rollout, status, transition)
        post_events(ctx.api_client, rollout.body, transition.actions)
        return Outcome(transition, rollout.body if rollout.wrote else None,
                       superseded=rollout.superseded())

    deleting = bool(meta.get("deletionTimestamp"))
    workloads = Workloads(ctx.api_client, ctx.cache, ctx.own_writes, body, spec, adopt=not deleting)
    if deleting:
        return _finalize(ctx, rollout, spec, status, workloads)
    if FINALIZER not in (meta.get("finalizers") or []):
        rollout.patch_metadata({"finalizers": [*(meta.get("finalizers") or []), FINALIZER]})

    status = _take_action_annotation(rollout, status)
    router = _router(ctx, body, spec)
    revision = revision_of(spec.template)
    stable_state = workloads.observe(status.stable_revision or revision)
    in_flight = status.candidate_revision if revision == status.candidate_revision else None
    candidate_state = workloads.observe(in_flight)
    shortfall = None
    # Under swap the candidate's GPUs come from the stable: there is nothing to wait for.
    if revision != (status.stable_revision or revision) and not candidate_state.exists \
            and spec.strategy.capacity.policy != "swap":
        # Before the candidate exists: would its pods find their GPUs free?
        size = candidate_replicas(spec.replicas, 0) if spec.traffic_routing.replicas is not None else spec.replicas
        shortfall = ctx.cache.capacity_shortfall(spec.template.get("spec") or {}, size)
    # A manual action goes first and never waits on a query: the last verdict stands for this pass.
    may_query = status.pending_action is None
    analysis = analyse(ctx.analysis, body, spec, status, revision, now, may_query=may_query)
    warmup = read_warmup(ctx.analysis, body, spec, status, revision, now, may_query=may_query)
    observations = Observations(
        template_revision=revision,
        stable_ready=stable_state.fully_ready,
        candidate_ready=candidate_state.fully_ready,
        candidate_any_ready=candidate_state.ready >= 1,
        candidate_ready_replicas=candidate_state.ready,
        candidate_unschedulable=candidate_state.unschedulable,
        stable_unschedulable=stable_state.unschedulable,
        capacity_shortfall=shortfall,
        analysis=analysis.signal,
        warmup=warmup,
        next_analysis_at=analysis.next_at,
        route_refusal=_refusal(router),
    )
    transition = _with_analysis(reconcile(spec, generation, status, observations, now), status, analysis)
    transition = _with_cost(ctx, body, spec, transition, revision, now)
    if api.ACTION_ANNOTATION in (rollout.body["metadata"].get("annotations") or {}):
        # An action that arrived while another was pending: take it right after this one.
        transition = Transition(transition.actions, transition.status, now)
    execute(transition.actions, ClusterTarget(workloads, router))
    _finish(rollout, status, transition)
    # Events and notifications only once the status that records the transition is stored: a
    # conflict recomputes the transition, and they must not be told twice.
    post_events(ctx.api_client, rollout.body, transition.actions)
    for notification in notifications(rollout.body, spec, status, transition.status, transition.actions,
                                      datetime.now(UTC)):
        ctx.notify(notification)
    return Outcome(transition, rollout.body if rollout.wrote else None,
                   superseded=rollout.superseded())


def _with_analysis(transition: Transition, status: api.ModelRolloutStatus, analysis: Run) -> Transition:
    """Store the analysis run's state: the analysis is the only source of status.analysis.

    A finished rollout keeps its deciding look. A running one drops the state of an earlier step
    attempt (a new candidate, a retry, a resumed halt) until its own first look, so that nothing
    reads the last attempt's verdict as this one's."""
    new = transition.status
    same_rollout = new.candidate_revision in (None, status.candidate_revision)
    if analysis.state is not None and same_rollout:
        decisions = [*new.decisions, *analysis.decisions][-api.MAX_DECISIONS:]
        return Transition(transition.actions, new.model_copy(
            update={"analysis": analysis.state, "decisions": decisions}), transition.wake_at)
    stale = new.analysis is not None and new.phase in (api.Phase.PROGRESSING, api.Phase.PAUSED) and (
        current_analysis(new) is None or not same_rollout)
    if stale:
        return Transition(transition.actions, new.model_copy(update={"analysis": None}), transition.wake_at)
    return transition


def _with_cost(ctx: Context, body: dict[str, Any], spec: api.ModelRolloutSpec, transition: Transition,
               template_revision: str, now: datetime) -> Transition:
    """status.cost of the versions the transition leaves serving, and a wake-up for the next reading."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def gpus(revision: str) -> int:
        view = ctx.cache.deployment(namespace, name, revision)
        if view is not None:
            return view.replicas * view.gpus_per_pod
        return spec.replicas * pod_gpus(spec.template) if revision == template_revision else 0

    cost, next_at = measure_cost(ctx.analysis, body, spec, transition.status, gpus, now)
    wake_at = min(filter(None, (transition.wake_at, next_at)), default=None)
    if cost == transition.status.cost and wake_at == transition.wake_at:
        return transition
    return Transition(transition.actions, transition.status.model_copy(update={"cost": cost}), wake_at)


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
    """The engine's actions, carried out on the cluster: workloads, Services and the route."""

    def __init__(self, workloads: Workloads, router: TrafficRouter | None) -> None:
        self.workloads = workloads
        self.router = router

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

    def set_route(self, weight: int, mirror: int, header: tuple[str, str] | None) -> None:
        if self.router is None:
            raise RouterError("trafficRouting.replicas has no route to write")  # the engine never asks
        self.router.set_route(weight, mirror, HeaderRoute(*header) if header else None)

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


def _finish(rollout: RolloutObject, old: api.ModelRolloutStatus, transition: Transition) -> None:
    new = transition.status.model_dump(mode="json", by_alias=True)
    if new == old.model_dump(mode="json", by_alias=True) and rollout.body.get("status"):
        return
    # The whole status in one conditional replace: a merge patch would keep keys the new status
    # dropped, and an unconditional write could overwrite a newer one.
    rollout.write_status(new)


__all__ = ["Context", "Outcome", "RolloutObject", "StaleSnapshot", "parse_status", "reconcile_object"]
