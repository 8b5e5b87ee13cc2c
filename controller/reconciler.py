"""One reconcile of one ModelRollout: observe the cluster, run the pure engine, carry out its actions.

The status is written last, so a crash anywhere before it repeats the same
transition from the same status; every action is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client
from pydantic import ValidationError

from controller import api
from controller.analysis.runner import Run, analyse
from controller.engine import (
    AnalysisSignal,
    DeleteRevision,
    EmitEvent,
    EnsureRevision,
    Observations,
    ScaleRevision,
    SelectServices,
    SetRoute,
    Transition,
    invalid_spec,
    reconcile,
)
from controller.engine.conditions import set_condition
from controller.events import post_event
from controller.routers import HeaderRoute, RouterError, TrafficRouter
from controller.routers.gatewayapi import GatewayAPIRouter
from controller.routers.istio import IstioRouter
from controller.routers.replicas import ReplicasRouter, candidate_replicas
from controller.timestamps import format_timestamp
from controller.workloads import Workloads, revision_of

log = structlog.get_logger()


@dataclass
class Outcome:
    transition: Transition | None
    api_writes: int


def _router(api_client: client.ApiClient, spec: api.ModelRolloutSpec, name: str, namespace: str,
            workloads: Workloads, services: dict[str, str]) -> TrafficRouter:
    stable_svc, candidate_svc = f"{name}-stable", f"{name}-candidate"
    routing = spec.traffic_routing
    if routing.gateway_api is not None:
        return GatewayAPIRouter(api_client, namespace, routing.gateway_api.http_route, stable_svc,
                                candidate_svc, spec.service.port, routing.gateway_api.rule_name)
    if routing.istio is not None:
        return IstioRouter(api_client, namespace, routing.istio.virtual_service, stable_svc, candidate_svc,
                           spec.service.port, routing.istio.route_name)
    return ReplicasRouter(
        spec.replicas,
        lambda replicas: workloads.scale_revision(services["candidate"], replicas),
        candidate_is_stable=services["candidate"] == services["stable"],
    )


def _take_action_annotation(custom: client.CustomObjectsApi, body: dict[str, Any],
                            status: api.ModelRolloutStatus) -> tuple[api.ModelRolloutStatus, int]:
    """Move a manual action from the annotation into status.pendingAction, then drop the annotation.

    In that order: a crash in between leaves the action pending exactly once.
    """
    meta = body["metadata"]
    action = (meta.get("annotations") or {}).get(api.ACTION_ANNOTATION)
    if not action:
        return status, 0
    writes = 0
    verb = action.split("@", 1)[0].strip()
    coordinates = (api.GROUP, api.VERSION, meta["namespace"], api.PLURAL, meta["name"])
    if verb in api.ACTIONS and status.pending_action is None:
        custom.patch_namespaced_custom_object_status(*coordinates, {"status": {"pendingAction": verb}})
        status = status.model_copy(update={"pending_action": verb})
        writes += 1
    elif verb not in api.ACTIONS:
        post_event(custom.api_client, body, "Warning", "UnknownAction",
                   f"{action!r} is not one of {', '.join(api.ACTIONS)}")
    custom.patch_namespaced_custom_object(
        *coordinates, {"metadata": {"annotations": {api.ACTION_ANNOTATION: None}}}
    )
    return status, writes + 1


def reconcile_object(api_client: client.ApiClient, body: dict[str, Any], now: datetime | None = None) -> Outcome:
    now = now or datetime.now(UTC)
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], meta.get("generation", 1)
    custom = client.CustomObjectsApi(api_client)
    status = api.ModelRolloutStatus.model_validate(body.get("status") or {})
    try:
        spec = api.ModelRolloutSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        message = "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        transition = invalid_spec(status, generation, message, now)
        _post_events(api_client, body, transition)
        return Outcome(transition, _finish(api_client, body, status, transition))

    status, writes = _take_action_annotation(custom, body, status)
    workloads = Workloads(api_client, body, spec)
    revision = revision_of(spec.template)
    stable_state = workloads.observe(status.stable_revision or revision)
    in_flight = status.candidate_revision if revision == status.candidate_revision else None
    candidate_state = workloads.observe(in_flight)
    # Without a router any ready pod serves; one ready candidate pod is the gate there.
    replicas_mode = spec.traffic_routing.replicas is not None
    candidate_ready = (candidate_state.ready >= 1) if replicas_mode else candidate_state.fully_ready
    try:
        analysis = analyse(api_client, body, spec, status, revision, now)
    except client.ApiException as error:
        analysis = Run(AnalysisSignal("hold", f"analysis credentials unreadable: {error.status} {error.reason}"))
    observations = Observations(
        template_revision=revision,
        stable_ready=stable_state.fully_ready,
        candidate_ready=candidate_ready,
        candidate_unschedulable=candidate_state.unschedulable,
        analysis=analysis.signal,
    )
    transition = reconcile(spec, generation, status, observations, now)
    # Keep the deciding look too: a rollout that just completed or rolled back has no candidate left.
    same_rollout = transition.status.candidate_revision in (None, status.candidate_revision)
    if analysis.state is not None and same_rollout:
        decisions = [*transition.status.decisions, *analysis.decisions][-api.MAX_DECISIONS:]
        transition = Transition(transition.actions, transition.status.model_copy(
            update={"analysis": analysis.state, "decisions": decisions}))
    services = {"stable": status.stable_revision or revision,
                "candidate": status.candidate_revision or status.previous_stable_revision
                or status.stable_revision or revision}
    try:
        writes += _execute(api_client, body, spec, transition, workloads, services)
    except (RouterError, client.ApiException) as error:
        reason = "RouteError" if isinstance(error, RouterError) else "ApiError"
        detail = str(error) if isinstance(error, RouterError) else f"{error.status} {error.reason}"
        log.warning("reconcile failed", namespace=namespace, name=name, error=detail)
        failed = _failed(status, generation, reason, detail, now)
        _post_events(api_client, body, failed)
        return Outcome(failed, writes + workloads.writes + _finish(api_client, body, status, failed))
    writes += workloads.writes
    return Outcome(transition, writes + _finish(api_client, body, status, transition))


def _execute(api_client: client.ApiClient, body: dict[str, Any], spec: api.ModelRolloutSpec,
             transition: Transition, workloads: Workloads, services: dict[str, str]) -> int:
    """Carry out the engine's actions in order; return the route writes made."""
    meta = body["metadata"]
    replicas_mode = spec.traffic_routing.replicas is not None
    router = _router(api_client, spec, meta["name"], meta["namespace"], workloads, services)
    route_writes = 0
    for action in transition.actions:
        if isinstance(action, EnsureRevision):
            initial = action.replicas
            if replicas_mode and action.revision != transition.status.stable_revision:
                if workloads.observe(action.revision).exists:
                    continue  # Its size is the route: the router owns it.
                initial = candidate_replicas(spec.replicas, 0)
            workloads.ensure_revision(action.revision, initial)
        elif isinstance(action, ScaleRevision):
            workloads.scale_revision(action.revision, action.replicas)
        elif isinstance(action, DeleteRevision):
            workloads.delete_revision(action.revision)
        elif isinstance(action, SelectServices):
            workloads.select_services(action.stable, action.candidate)
            services.update(stable=action.stable, candidate=action.candidate)
            router = _router(api_client, spec, meta["name"], meta["namespace"], workloads, services)
        elif isinstance(action, SetRoute):
            router.set_route(action.weight, action.mirror, HeaderRoute(*action.header) if action.header else None)
            route_writes += 1
        else:
            post_event(api_client, body, action.type, action.reason, action.message)
    return route_writes


def _failed(status: api.ModelRolloutStatus, generation: int, reason: str, detail: str,
            now: datetime) -> Transition:
    """The traffic state stays the one `status` records: the next reconcile retries the same writes."""
    conditions = set_condition(status.conditions, api.ConditionType.PROGRESSING.value, "False", reason, detail,
                               format_timestamp(now))
    new_status = status.model_copy(update={"conditions": conditions, "message": f"{reason}: {detail}",
                                           "observed_generation": generation})
    events: list[EmitEvent] = [] if status.message == new_status.message else [EmitEvent("Warning", reason, detail)]
    return Transition(list(events), new_status)


def _post_events(api_client: client.ApiClient, body: dict[str, Any], transition: Transition) -> None:
    for action in transition.actions:
        if isinstance(action, EmitEvent):
            post_event(api_client, body, action.type, action.reason, action.message)


def _finish(api_client: client.ApiClient, body: dict[str, Any], old: api.ModelRolloutStatus,
            transition: Transition) -> int:
    new = transition.status.model_dump(mode="json", by_alias=True)
    if new == old.model_dump(mode="json", by_alias=True):
        return 0
    meta = body["metadata"]
    # A JSON Patch that sets the whole status: a merge patch would keep keys the new status
    # dropped (a finished A/B test's numbers would outlive it inside `analysis`).
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, meta["namespace"], api.PLURAL, meta["name"],
        [{"op": "add", "path": "/status", "value": new}], _content_type="application/json-patch+json",
    )
    return 1


__all__ = ["Outcome", "reconcile_object"]
