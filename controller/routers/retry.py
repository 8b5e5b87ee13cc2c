"""Read-modify-replace with optimistic concurrency: a conflicting write by the user is retried, never lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from controller.routers.base import RouterError

ATTEMPTS = 5


class CustomObject:
    """One namespaced custom object, read and replaced with its resourceVersion."""

    def __init__(self, api_client: client.ApiClient, group: str, version: str, plural: str,
                 namespace: str, name: str) -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.coordinates = (group, version, namespace, plural, name)
        self.calls = 0

    def read(self) -> dict[str, Any]:
        self.calls += 1
        try:
            obj: dict[str, Any] = self.api.get_namespaced_custom_object(*self.coordinates)  # type: ignore[assignment]
        except client.ApiException as error:
            if error.status == 404:
                group, _, namespace, plural, name = self.coordinates
                raise RouterError(f"{plural}.{group} {namespace}/{name} not found") from None
            raise
        return obj

    def update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Apply a pure change to the stored object; skip the write when nothing changes."""
        for _ in range(ATTEMPTS):
            current = self.read()
            wanted = change(current)
            if wanted == current:
                return current
            self.calls += 1
            try:
                replaced: dict[str, Any] = self.api.replace_namespaced_custom_object(  # type: ignore[assignment]
                    *self.coordinates, wanted
                )
                return replaced
            except client.ApiException as error:
                if error.status != 409:
                    raise
        raise RouterError(f"{self.coordinates[3]} {self.coordinates[4]}: conflicting writes, gave up")
