"""Every Kopf decorator of the operator. Thin: watches feed the caches and wake the reconcile loop.

Kopf indexes are the caches (one watch per resource kind, filtered by our
labels). Event handlers only enqueue the rollout a change concerns; the
reconcile loop (`controller/runtime/`) does the rest with bounded workers and
per-rollout deadlines. No handler blocks the event loop, and nothing polls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

import kopf
import structlog
from kubernetes import client

from controller import api, metrics
from controller.capacity import node_view, pod_requests
from controller.kube.cache import (
    REVISION_LABEL,
    ROLLOUT_LABEL,
    Cache,
    DeploymentView,
    ServiceView,
    deployment_view,
    gateway_view,
    plain,
    ready_endpoints,
    route_key,
    service_view,
    unschedulable_message,
)
from controller.kube.client import api_client_from_kubeconfig
from controller.kube.own_writes import ObjectVersion
from controller.logs import configure_logging
from controller.measure.addresses import AddressPolicy
from controller.measure.prometheus import PrometheusPool
from controller.routers import gatewayapi, istio
from controller.runtime import shard_labels
from controller.runtime.leases import LeaseKeeper
from controller.runtime.reconcile_loop import ReconcileLoop
from controller.runtime.workqueue import Lane

OURS = {ROLLOUT_LABEL: kopf.PRESENT}
ROUTE_KINDS = ((gatewayapi.GROUP, gatewayapi.VERSION, gatewayapi.PLURAL), (istio.GROUP, istio.VERSION, istio.PLURAL))
GATEWAYS = (gatewayapi.GROUP, gatewayapi.VERSION, "gateways")
ENDPOINT_SLICES = ("discovery.k8s.io", "v1", "endpointslices")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_WORKERS = 8
log = structlog.get_logger()


@dataclass(frozen=True)
class Election:
    """Who this replica is, where its Leases live, and how many shards the rollouts are split into."""

    identity: str
    namespace: str
    shards: int = 1
    # A static shard: this replica watches and serves only the rollouts labelled with it.
    shard: int | None = None


# --- caches ------------------------------------------------------------------


def _key(body: kopf.Body) -> tuple[str, str]:
    meta = body.get("metadata", {})
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


@kopf.index(api.GROUP, api.VERSION, api.PLURAL)
async def rollouts(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {_key(body): plain(body)}


@kopf.index(api.GROUP, api.VERSION, api.PLURAL)
async def rollouts_by_route(body: kopf.Body, spec: kopf.Spec, **_: Any) -> dict[Any, Any] | None:
    key = route_key(spec, _key(body)[0])
    return {key: _key(body)} if key else None


@kopf.index("apps", "v1", "deployments", labels=OURS)
async def deployments(labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    view: DeploymentView | None = deployment_view(body)
    return {(_key(body)[0], labels[ROLLOUT_LABEL]): view} if view else None


@kopf.index("", "v1", "services")
async def services(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    # All Services, not only ours: a Service we did not create must be seen to be left alone.
    view: ServiceView = service_view(body)
    return {_key(body): view}


@kopf.index("", "v1", "pods", labels=OURS)
async def unschedulable(labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    message = unschedulable_message(body)
    if message is None or REVISION_LABEL not in labels:
        return None
    return {(_key(body)[0], labels[ROLLOUT_LABEL], labels[REVISION_LABEL]): message}


@kopf.index(*ROUTE_KINDS[0])
async def httproutes(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(gatewayapi.PLURAL, *_key(body)): plain(body)}


@kopf.index(*ROUTE_KINDS[1])
async def virtualservices(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(istio.PLURAL, *_key(body)): plain(body)}


@kopf.index(*GATEWAYS)
async def gateways(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {_key(body): gateway_view(body)}


# Our Services' slices only: the endpoints controller copies the Service's labels onto them.
@kopf.index(*ENDPOINT_SLICES, labels=OURS)
async def endpoints(labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    service = labels.get(SERVICE_NAME_LABEL)
    return {(_key(body)[0], service): ready_endpoints(body)} if service else None


async def nodes(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    view = node_view(body)
    return {view.name: view}


async def node_usage(spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[Any, Any] | None:
    """The extended resources (GPUs) a pod holds on its node, until it ends."""
    node = spec.get("nodeName")
    try:
        requests = pod_requests(spec)
    except ValueError as error:  # The apiserver validates quantities; say so if one ever slips through.
        log.warning("pod's extended resources not readable; counted as none", node=node, error=str(error))
        return None
    if not node or not requests or status.get("phase") in ("Succeeded", "Failed"):
        return None
    return {node: requests}


def watch_capacity() -> None:
    """Index nodes and every pod's extended resources, for the capacity check before a candidate is
    created. Cluster-wide installs only: it needs to list nodes, and pods in every namespace."""
    kopf.index("", "v1", "nodes")(nodes)
    kopf.index("", "v1", "pods")(node_usage)


# --- wake-ups ----------------------------------------------------------------


def _loop(memo: kopf.Memo) -> ReconcileLoop:
    loop: ReconcileLoop = memo["loop"]
    return loop


def _seen(kind: str, body: kopf.Body) -> ObjectVersion:
    """The object and version a watch event carries: the echo of our own write wakes nothing."""
    meta = body.get("metadata", {})
    return kind, str(meta.get("namespace", "")), str(meta.get("name", "")), meta.get("resourceVersion")


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def rollout_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if event["type"] == "DELETED":
        _loop(memo).forget(_key(body))
        return
    action = api.ACTION_ANNOTATION in body.get("metadata", {}).get("annotations", {})
    _loop(memo).notify(_key(body), _seen(api.KIND, body), action_requested=action)


@kopf.on.event("apps", "v1", "deployments", labels=OURS)
async def deployment_changed(labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _loop(memo).workload_moved((_key(body)[0], labels[ROLLOUT_LABEL]), _seen("Deployment", body))


@kopf.on.event("", "v1", "services", labels=OURS)
async def service_changed(labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _loop(memo).notify((_key(body)[0], labels[ROLLOUT_LABEL]), _seen("Service", body), lane=Lane.ROUTINE)


@kopf.on.event("", "v1", "pods", labels=OURS)
async def pod_changed(event: kopf.RawEvent, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo,
                      **_: Any) -> None:
    # Readiness arrives through the Deployment's status; a pod matters on its own only when the
    # scheduler cannot place it (or such a pod goes away).
    if unschedulable_message(body) is not None or event["type"] == "DELETED":
        _loop(memo).notify((_key(body)[0], labels[ROLLOUT_LABEL]), lane=Lane.ROUTINE)


async def _route_changed(plural: str, body: kopf.Body, memo: kopf.Memo) -> None:
    """A route edited by someone else is put back by the rollouts that manage it."""
    for key in _loop(memo).cache.users_of_route((plural, *_key(body))):
        _loop(memo).notify(key, _seen(plural, body))


@kopf.on.event(*ROUTE_KINDS[0])
async def httproute_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _route_changed(gatewayapi.PLURAL, body, memo)


@kopf.on.event(*ROUTE_KINDS[1])
async def virtualservice_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _route_changed(istio.PLURAL, body, memo)


@kopf.on.event(*GATEWAYS)
async def gateway_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Gateway's status is its routes' status: the rollouts on its routes look again."""
    loop = _loop(memo)
    for key in loop.cache.routes_of_gateway(*_key(body)):
        for rollout in loop.cache.users_of_route(key):
            loop.notify(rollout, lane=Lane.ROUTINE)


@kopf.on.event(*ENDPOINT_SLICES, labels=OURS)
async def endpoints_changed(labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _loop(memo).notify((_key(body)[0], labels[ROLLOUT_LABEL]), lane=Lane.ROUTINE)


# --- lifecycle ---------------------------------------------------------------


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **indexes: Any) -> None:
    configure_logging()
    # Our own Events tell the rollout's story; Kopf's handler-log events would only repeat it.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # An abort must not wait for more events to batch up: react within milliseconds.
    settings.batching.batch_window = 0.01
    settings.scanning.disabled = bool(memo.get("namespaced"))
    election: Election | None = memo.get("election")
    if election is not None and election.shard is not None:
        # Asked of the apiserver, not filtered here: the other shards' objects never reach this process.
        mine = shard_labels.selector(election.shard, election.shards)
        settings.watching.label_selectors[api.GROUP, api.PLURAL] = mine
        settings.watching.label_selectors["apps", "deployments"] = mine
    api_client = metrics.count_requests(_api_client())
    cache = Cache(
        rollouts=indexes["rollouts"], rollouts_by_route=indexes["rollouts_by_route"],
        deployments=indexes["deployments"], services=indexes["services"],
        unschedulable=indexes["unschedulable"],
        routes={gatewayapi.PLURAL: indexes["httproutes"], istio.PLURAL: indexes["virtualservices"]},
        gateways=indexes["gateways"], endpoints=indexes["endpoints"],
        nodes=indexes.get("nodes"), node_usage=indexes.get("node_usage"),
    )
    metrics.WATCHED.set_function(lambda: len(cache.rollouts))
    workers = int(memo.get("workers") or os.environ.get("MODELROLLOUT_WORKERS") or DEFAULT_WORKERS)
    events = asyncio.get_running_loop()
    loop = ReconcileLoop(api_client, cache, PrometheusPool(events), workers=workers,
                         default_prometheus=memo.get("default_prometheus"),
                         addresses=memo.get("addresses") or AddressPolicy(),
                         comparator_image=memo.get("comparator_image"))
    memo["loop"] = loop
    memo["loop_task"] = asyncio.create_task(loop.run(), name="reconcile loop")
    memo["loop_task"].add_done_callback(_stop_if_dead)
    if election is not None:
        static = election.shard is not None
        keeper = LeaseKeeper(
            api_client, election.namespace, election.identity, election.shards,
            # Called from the elector's thread: hand the wake-up to the event loop.
            on_acquired=lambda shard: events.call_soon_threadsafe(loop.notify_shard, shard, election.shards, static),
            only=election.shard,
        )
        loop.owns = lambda key: keeper.owns(*key)
        memo["lease_task"] = asyncio.create_task(keeper.run(), name="leases")
        if election.shard is not None:
            labeller = shard_labels.ShardLabeller(api_client, election.shards, election.shard,
                                                  tuple(memo.get("namespaces") or ()))
            labeller.start()
            memo["labeller"] = labeller
    port = os.environ.get("MODELROLLOUT_METRICS_PORT")
    if port:
        metrics.serve(int(port))


def _stop_if_dead(task: asyncio.Task[None]) -> None:
    """The loop never ends by itself; if it does, stop the process so Kubernetes restarts it,
    rather than run on with watches and no reconciles."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("the reconcile loop stopped; exiting", error=repr(task.exception()))
        os.kill(os.getpid(), signal.SIGTERM)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if "labeller" in memo:
        memo["labeller"].stop()
    for name in ("lease_task", "loop_task"):  # Leases first: a standby takes over at once.
        task: asyncio.Task[None] | None = memo.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if "loop" in memo:
        await _loop(memo).pool.close()


def _api_client() -> client.ApiClient:
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        return api_client_from_kubeconfig(kubeconfig.split(os.pathsep)[0])
    from kubernetes import config

    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()
