"""Resource versions our own writes produced, so their watch events wake no reconcile.

The reconcile that wrote an object already acted on what it wrote; the echo of
that write from the watch carries nothing new.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)
ObjectVersion = tuple[str, str, str, str | None]  # (kind, namespace, name, resourceVersion)


class OwnWrites:
    def __init__(self, limit: int = 100_000) -> None:
        self._versions: OrderedDict[ObjectKey, str] = OrderedDict()
        self._limit = limit
        # Writes happen in reconcile workers (threads); checks on the event loop.
        self._lock = threading.Lock()

    def record(self, kind: str, namespace: str, name: str, resource_version: str | None) -> None:
        if not resource_version:
            return
        with self._lock:
            key = (kind, namespace, name)
            self._versions[key] = resource_version
            self._versions.move_to_end(key)
            while len(self._versions) > self._limit:
                self._versions.popitem(last=False)

    def is_own(self, kind: str, namespace: str, name: str, resource_version: str | None) -> bool:
        """True once for the event that echoes our last write of this object."""
        with self._lock:
            key = (kind, namespace, name)
            if resource_version and self._versions.get(key) == resource_version:
                del self._versions[key]
                return True
            return False
