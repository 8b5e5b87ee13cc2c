"""Static shards: each rollout carries its shard in a label, so that a shard's replicas ask the
apiserver for their own rollouts and Deployments only (a label selector on the watch), and their
caches, and the watch traffic, shrink with the shard count.

A shard's replicas label that shard's rollouts among those that have no shard label for this
shard count: one watch on the selector `shard notin (0-of-M, ..., (M-1)-of-M)`, which matches only
such rollouts (new ones, ones from before sharding, ones labelled for another count). The label's
value names the count, so a change of M moves every rollout to its new shard and leaves none on a
shard nobody serves. The shard is `shard_of(namespace, name)`, the same on every replica: each
rollout is labelled by its own shard's replicas, a standby too (so a rollout made while the leader
changes waits for no relist), and they all write the same value. A rollout's Deployments follow
its label when its new shard's replica first meets them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import urllib3
from kubernetes import client, watch

from controller import api
from controller.kube.cache import SHARD_LABEL
from controller.runtime.leases import shard_of

log = structlog.get_logger()

WATCH_SECONDS = 60
RETRY_SECONDS = 5.0


def value(shard: int, shards: int) -> str:
    return f"{shard}-of-{shards}"


def unlabelled(shards: int) -> str:
    """The selector of rollouts with no shard label, or one for another shard count."""
    return f"{SHARD_LABEL} notin ({','.join(value(shard, shards) for shard in range(shards))})"


def selector(shard: int, shards: int) -> str:
    return f"{SHARD_LABEL}={value(shard, shards)}"


@dataclass
class ShardLabeller:
    """Labels `shard`'s rollouts with it, in `namespaces` (empty: the whole cluster)."""

    api_client: client.ApiClient
    shards: int
    shard: int
    namespaces: tuple[str, ...] = ()
    stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        # Threads, not the event loop: the client is synchronous and a watch blocks between events.
        for namespace in self.namespaces or (None,):
            threading.Thread(target=self._keep_watching, args=(namespace,), daemon=True,
                             name=f"shard-labels-{namespace or 'cluster'}").start()

    def stop(self) -> None:
        self.stopped.set()

    def _keep_watching(self, namespace: str | None) -> None:
        while not self.stopped.is_set():
            try:
                self._watch(namespace)
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                log.warning("shard labels: watch failed; retrying", namespace=namespace,
                            error=f"{type(error).__name__}: {error}"[:200], retry_in=RETRY_SECONDS)
                self.stopped.wait(RETRY_SECONDS)

    def _lister(self, namespace: str | None) -> Callable[..., Any]:
        custom = client.CustomObjectsApi(self.api_client)
        if namespace is None:
            return lambda **kwargs: custom.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, **kwargs)
        return lambda **kwargs: custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL,
                                                                     **kwargs)

    def _watch(self, namespace: str | None) -> None:
        """List what needs a label, label it, then watch from that list until the server ends the watch."""
        lister = self._lister(namespace)
        listing = lister(label_selector=unlabelled(self.shards))
        for item in listing.get("items") or []:
            self.label(item)
        version = (listing.get("metadata") or {}).get("resourceVersion")
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        started = time.monotonic()
        for event in stream.stream(lister, label_selector=unlabelled(self.shards),  # type: ignore[no-untyped-call]
                                   resource_version=version, timeout_seconds=WATCH_SECONDS):
            if self.stopped.is_set():
                stream.stop()  # type: ignore[no-untyped-call]
                return
            # DELETED: gone, or it now matches no more (labelled, maybe by another replica).
            if event["type"] in ("ADDED", "MODIFIED"):
                self.label(event["object"])
        if time.monotonic() - started < 1.0:
            self.stopped.wait(1.0)  # A watch the server ends at once (410 Gone): relist, but not in a spin.

    def label(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        if shard_of(namespace, name, self.shards) != self.shard:
            return  # Another shard's: its own replicas label it.
        shard = value(self.shard, self.shards)
        if (meta.get("labels") or {}).get(SHARD_LABEL) == shard:
            return
        try:
            client.CustomObjectsApi(self.api_client).patch_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"metadata": {"labels": {SHARD_LABEL: shard}}})
        except client.ApiException as error:
            if error.status != 404:  # Gone meanwhile: nothing to label.
                raise
            return
        log.info("rollout given its shard", namespace=namespace, name=name, shard=shard)
