"""Every Kopf decorator of the operator. Thin: spec -> domain (reconciler, engine) -> patches.

One daemon per ModelRollout runs the level-triggered reconcile: at once when a
watch event arrives for the object (an annotation written by `kubectl`, a spec
change), and otherwise every second, so step timers and readiness are noticed.
The state lives in `status`, so a restarted operator resumes the same step.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import kopf
import structlog
from kubernetes import client

from controller import api, metrics
from controller.kubeclient import api_client_from_kubeconfig
from controller.logs import configure_logging
from controller.reconciler import reconcile_object

POLL_SECONDS = float(os.environ.get("MODELROLLOUT_POLL_SECONDS", "1"))
log = structlog.get_logger()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_logging()
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration"
    )
    # Our own Events tell the rollout's story; Kopf's handler-log events would only repeat it.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # An abort must not wait for more events to batch up: react within milliseconds.
    settings.batching.batch_window = 0.01
    memo["api_client"] = metrics.count_requests(_api_client())
    port = os.environ.get("MODELROLLOUT_METRICS_PORT")
    if port:
        metrics.serve(int(port))


def _api_client() -> client.ApiClient:
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        return api_client_from_kubeconfig(kubeconfig.split(os.pathsep)[0])
    from kubernetes import config

    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
def wake(memo: kopf.Memo, **_: Any) -> None:
    """A change to the object wakes its daemon now rather than at the next poll."""
    memo.setdefault("wake", threading.Event()).set()


@kopf.daemon(api.GROUP, api.VERSION, api.PLURAL, cancellation_timeout=10.0)
def run(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, name: str, namespace: str | None,
        **_: Any) -> None:
    wake_event: threading.Event = memo.setdefault("wake", threading.Event())
    api_client: client.ApiClient = memo["api_client"]
    bound = log.bind(namespace=namespace, name=name)
    while not stopped:
        wake_event.clear()
        snapshot = _plain(body)
        try:
            with metrics.RECONCILE_SECONDS.time():
                outcome = reconcile_object(api_client, snapshot)
        except client.ApiException as error:
            metrics.RECONCILES.labels("error").inc()
            bound.warning("reconcile error; retrying", status=error.status, reason=error.reason)
        else:
            metrics.RECONCILES.labels("ok").inc()
            if outcome.transition is not None:
                _export(namespace or "", name, outcome.transition.status)
        wake_event.wait(POLL_SECONDS)


def _export(namespace: str, name: str, status: api.ModelRolloutStatus) -> None:
    metrics.CANARY_WEIGHT.labels(namespace, name).set(status.canary_weight)
    metrics.MIRROR_PERCENT.labels(namespace, name).set(status.mirror_percent)
    for phase in api.Phase:
        metrics.PHASE.labels(namespace, name, phase.value).set(1 if status.phase == phase else 0)


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A plain, frozen-in-time copy of Kopf's live body view."""
    return {
        "metadata": dict(body.metadata) | {"annotations": dict(body.metadata.annotations)},
        "spec": dict(body.spec),
        "status": dict(body.status),
    }
