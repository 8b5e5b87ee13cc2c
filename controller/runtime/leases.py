"""Leader election and sharding on `coordination.k8s.io` Leases, after client-go's leaderelection.

Rollouts are split into `shards` by a stable hash of namespace/name. Each shard
has one Lease; the replica holding it is the only one that reconciles that
shard's rollouts. With one shard this is plain leader election. With several,
each replica also renews a membership Lease, and holds at most its fair share
(shards / live members, rounded up): a new replica gets shards as the others
release their extras, a dead one's shards expire and are taken.

With a static shard (`only`), the replica watches only that shard's rollouts (their shard label,
`controller/runtime/shard_labels.py`) and competes for that shard's Lease alone: the replicas
started for one shard are its leader and standbys, and nothing else is shared.

Expiry is judged by the local clock from the moment this replica last saw a
Lease change (as client-go does), so clock skew between nodes does not matter.
All writes carry the resourceVersion read: two candidates never both win.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client

log = structlog.get_logger()

# client-go's defaults for controllers: a 15 s lease, tried every 2 s, given up 10 s after the last renewal.
LEASE_SECONDS = 15.0
RETRY_SECONDS = 2.0
RENEW_DEADLINE_SECONDS = 10.0
PREFIX = "modelrollout"
# Past a Lease's expiry before trying it: `_expired` must see it expired.
EXPIRY_MARGIN_SECONDS = 0.05


def shard_of(namespace: str, name: str, shards: int) -> int:
    """A stable shard for a rollout: the same on every replica and across restarts."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def fair_share(shards: int, members: int) -> int:
    return math.ceil(shards / max(1, members))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Seen:
    holder: str
    renew_time: str
    observed: float  # local monotonic time this record was first seen


@dataclass
class LeaseKeeper:
    api_client: client.ApiClient
    namespace: str
    identity: str
    shards: int = 1
    lease_seconds: float = LEASE_SECONDS
    retry_seconds: float = RETRY_SECONDS
    renew_deadline: float = RENEW_DEADLINE_SECONDS
    on_acquired: Callable[[int], object] = lambda _: None
    # The one shard this replica serves and watches; None: any, by fair share.
    only: int | None = None
    held: set[int] = field(default_factory=set)
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _renewed: dict[int, float] = field(default_factory=dict)
    # Leases this replica wrote last: (resourceVersion, acquireTime, transitions).
    _mine: dict[str, tuple[str, Any, int]] = field(default_factory=dict)
    _executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, "leases"))

    def owns(self, namespace: str, name: str) -> bool:
        if self.only is not None:
            return self.only in self.held  # The watch shows only this shard's rollouts, by their label.
        return shard_of(namespace, name, self.shards) in self.held

    def lease_name(self, shard: int) -> str:
        return PREFIX if self.shards == 1 else f"{PREFIX}-shard-{shard}"

    async def run(self) -> None:
        """Acquire and renew until cancelled; give every shard up on the way out."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = time.monotonic()
                try:
                    await loop.run_in_executor(self._executor, self.tick)
                except Exception as error:  # an unreachable API must not end the elector
                    log.warning("lease round failed", error=f"{type(error).__name__}: {error}"[:200])
                self._drop_stale()
                pause = max(0.0, self.retry_seconds - (time.monotonic() - started))
                await asyncio.sleep(min(pause, self._until_an_expiry()))
        finally:
            await loop.run_in_executor(self._executor, self.release_all)

    def _until_an_expiry(self) -> float:
        """Seconds until a Lease someone else holds expires, as this replica saw it: try then, not at
        the next round (up to `retry_seconds` later), so a takeover waits for the lease alone."""
        now = time.monotonic()
        expiries = [seen.observed + self.lease_seconds - now for name, seen in self._seen.items()
                    if seen.holder and seen.holder != self.identity and name not in self._mine]
        upcoming = [seconds for seconds in expiries if seconds > 0]
        return min(upcoming, default=self.retry_seconds) + EXPIRY_MARGIN_SECONDS

    def _drop_stale(self) -> None:
        """A shard not renewed within the lease duration may already be someone else's: stop at once."""
        now = time.monotonic()
        for shard in list(self.held):
            if now - self._renewed.get(shard, 0.0) > self.renew_deadline:
                self.held.discard(shard)
                log.warning("shard lease lost", shard=shard, identity=self.identity)

    def tick(self) -> None:
        coordination = client.CoordinationV1Api(self.api_client)
        members = 1
        if self.shards > 1 and self.only is None:
            self._renew_or_take(coordination, f"{PREFIX}-member-{self.identity}")
            members = self._live_members(coordination)
        share = 1 if self.only is not None else fair_share(self.shards, members)
        for shard in range(self.shards) if self.only is None else (self.only,):
            name = self.lease_name(shard)
            if shard in self.held and len(self.held) > share:
                self._release(coordination, name)
                self.held.discard(shard)
                log.info("shard released for balance", shard=shard, identity=self.identity, share=share)
                continue
            want = shard in self.held or len(self.held) < share
            if want and self._renew_or_take(coordination, name):
                self._renewed[shard] = time.monotonic()
                if shard not in self.held:
                    self.held.add(shard)
                    log.info("shard lease acquired", shard=shard, identity=self.identity)
                    self.on_acquired(shard)
            elif shard in self.held:
                self.held.discard(shard)

    def _live_members(self, coordination: client.CoordinationV1Api) -> int:
        listing = coordination.list_namespaced_lease(self.namespace)
        live = 0
        for lease in listing.items:
            name = lease.metadata.name if lease.metadata else ""
            if name and name.startswith(f"{PREFIX}-member-") and not self._expired(name, lease):
                live += 1
        return max(1, live)

    def _expired(self, name: str, lease: Any) -> bool:
        spec = lease.spec
        holder = (spec.holder_identity if spec else None) or ""
        renew = str(spec.renew_time) if spec and spec.renew_time else ""
        seen = self._seen.get(name)
        if seen is None or (seen.holder, seen.renew_time) != (holder, renew):
            seen = _Seen(holder, renew, time.monotonic())
            self._seen[name] = seen
        return not holder or time.monotonic() - seen.observed > self.lease_seconds

    def _renew_or_take(self, coordination: client.CoordinationV1Api, name: str) -> bool:
        """True when this replica holds the Lease after the call."""
        mine = self._mine.get(name)
        if mine is not None:
            # We wrote it last: renew on that version without reading it first (one request).
            known, acquired, transitions = mine
            body = {"metadata": {"name": name, "resourceVersion": known},
                    "spec": self._spec(transitions, acquire_time=acquired)}
            try:
                renewed = coordination.replace_namespaced_lease(name, self.namespace, body)  # type: ignore[arg-type]
            except client.ApiException as error:
                if error.status not in (404, 409):
                    raise
                del self._mine[name]  # Changed under us: read it and decide below.
            else:
                self._remember(name, renewed)
                return True
        try:
            lease = coordination.read_namespaced_lease(name, self.namespace)
        except client.ApiException as error:
            if error.status != 404:
                raise
            body = {"metadata": {"name": name}, "spec": self._spec(transitions=0)}
            try:
                created = coordination.create_namespaced_lease(self.namespace, body)  # type: ignore[arg-type]
            except client.ApiException as create_error:
                if create_error.status == 409:
                    return False  # Someone else created it first.
                raise
            self._remember(name, created)
            return True
        holder = (lease.spec.holder_identity if lease.spec else None) or ""
        if holder != self.identity and not self._expired(name, lease):
            return False
        transitions = (lease.spec.lease_transitions or 0) if lease.spec else 0
        version = lease.metadata.resource_version if lease.metadata else None
        body = {"metadata": {"name": name, "resourceVersion": version},
                "spec": self._spec(transitions if holder == self.identity else transitions + 1,
                                   acquire_time=lease.spec.acquire_time if holder == self.identity and lease.spec
                                   else None)}
        try:
            replaced = coordination.replace_namespaced_lease(name, self.namespace, body)  # type: ignore[arg-type]
        except client.ApiException as error:
            if error.status == 409:
                return False  # Lost the race: the other write carried a newer version.
            raise
        self._remember(name, replaced)
        return True

    def _remember(self, name: str, lease: Any) -> None:
        spec = lease.spec
        self._mine[name] = (lease.metadata.resource_version, spec.acquire_time, spec.lease_transitions or 0)

    def _spec(self, transitions: int, acquire_time: Any = None) -> dict[str, Any]:
        now = _now()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "acquireTime": acquire_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if acquire_time else now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _release(self, coordination: client.CoordinationV1Api, name: str) -> None:
        """Hand a Lease back at once (empty holder), so the next replica need not wait for expiry."""
        self._mine.pop(name, None)
        try:
            lease = coordination.read_namespaced_lease(name, self.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            coordination.patch_namespaced_lease(name, self.namespace, {
                "metadata": {"resourceVersion": lease.metadata.resource_version if lease.metadata else None},
                "spec": {"holderIdentity": None, "renewTime": None}})
        except client.ApiException as error:
            log.warning("lease not released", lease=name, status=error.status)

    def release_all(self) -> None:
        coordination = client.CoordinationV1Api(self.api_client)
        for shard in sorted(self.held):
            self._release(coordination, self.lease_name(shard))
        self.held.clear()
        if self.shards > 1 and self.only is None:
            self._release(coordination, f"{PREFIX}-member-{self.identity}")
