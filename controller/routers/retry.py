"""Read-modify-replace with optimistic concurrency: a conflicting write by the user is retried, never lost.

The first attempt starts from the watch-fed cache; only a conflict (the cache
was behind) costs a GET.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from controller.kube.own_writes import OwnWrites
from controller.routers.base import RouterError

ATTEMPTS = 5


class CustomObject:
    """One namespaced custom object, read from the cache and replaced with its resourceVersion."""

    def __init__(self, api_client: client.ApiClient, group: str, version: str, plural: str,
                 namespace: str, name: str, cached: Callable[[], dict[str, Any] | None],
                 own_writes: OwnWrites) -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.coordinates = (group, version, namespace, plural, name)
        self.cached = cached
        self.own_writes = own_writes

    def _missing(self) -> RouterError:
        group, _, namespace, plural, name = self.coordinates
        return RouterError(f"{plural}.{group} {namespace}/{name} not found")

    def read(self, fresh: bool = False) -> dict[str, Any]:
        if not fresh:
            cached = self.cached()
            if cached is not None:
                return cached
        try:
            obj: dict[str, Any] = self.api.get_namespaced_custom_object(*self.coordinates)  # type: ignore[assignment]
        except client.ApiException as error:
            if error.status == 404:
                raise self._missing() from None
            raise
        return obj

    def update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Apply a pure change to the stored object; skip the write when nothing changes."""
        fresh = False
        for _ in range(ATTEMPTS):
            current = self.read(fresh)
            wanted = change(current)
            if wanted == current:
                return current
            try:
                replaced: dict[str, Any] = self.api.replace_namespaced_custom_object(  # type: ignore[assignment]
                    *self.coordinates, wanted
                )
            except client.ApiException as error:
                if error.status == 404:
                    raise self._missing() from None
                if error.status != 409:
                    raise
                fresh = True
                continue
            _, _, namespace, plural, name = self.coordinates
            self.own_writes.record(plural, namespace, name, replaced.get("metadata", {}).get("resourceVersion"))
            return replaced
        raise RouterError(f"{self.coordinates[3]} {self.coordinates[4]}: conflicting writes, gave up")
