"""Kubernetes Events on a ModelRollout, so `kubectl describe` tells its story."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client

from controller import api
from controller.engine import Action, EmitEvent

log = structlog.get_logger()


def post_events(api_client: client.ApiClient, body: dict[str, Any], actions: Iterable[Action]) -> None:
    """Tell the EmitEvent actions among `actions`, in order."""
    for action in actions:
        if isinstance(action, EmitEvent):
            post_event(api_client, body, action.type, action.reason, action.message)


def post_event(api_client: client.ApiClient, body: dict[str, Any], type_: str, reason: api.EventReason,
               message: str) -> None:
    meta = body["metadata"]
    now = datetime.now(UTC)
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND, "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "modelrollout"},
        "firstTimestamp": now.isoformat(),
        "lastTimestamp": now.isoformat(),
        "count": 1,
    }
    try:
        client.CoreV1Api(api_client).create_namespaced_event(meta["namespace"], event)  # type: ignore[arg-type]
    except client.ApiException as error:
        # An event that cannot be posted must not stop a rollback.
        log.warning("event not posted", reason=reason, status=error.status)
    log.info(message, namespace=meta["namespace"], name=meta["name"], reason=reason)
