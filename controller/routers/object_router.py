"""A router over one route object (HTTPRoute, VirtualService): provider-specific pure builders,
shared read-modify-replace I/O. Each provider module supplies its builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from controller.kube.own_writes import OwnWrites
from controller.routers.base import HeaderRoute, RouteRefused, RouterError
from controller.routers.ownership import Access, Release, RouteShape, access, mirror_targets, release
from controller.routers.retry import CustomObject

Obj = dict[str, Any]


@dataclass(frozen=True)
class RouteBuilders:
    """What a provider knows about its route object; all pure."""

    kind: str
    group: str
    version: str
    plural: str
    shape: RouteShape
    with_route: Callable[[Obj, str, str, int, int, int, str | None, str | None], Obj]
    with_header_route: Callable[[Obj, str, str, int, HeaderRoute | None, str | None], Obj]
    read_route: Callable[[Obj, str, str, str | None], tuple[int, int]]


def writable(route: Obj, shape: RouteShape, stable: str, candidate: str, section: str | None) -> tuple[Access, int]:
    """The rule this rollout may write, and its index; RouteRefused when there is none."""
    found = access(route, shape, stable, candidate, section)
    if not found.writable or found.index is None:
        raise RouteRefused(found.state, found.message)
    return found, found.index


class ObjectRouter:
    def __init__(self, builders: RouteBuilders, api_client: client.ApiClient, namespace: str, object_name: str,
                 stable: str, candidate: str, port: int, section: str | None,
                 cached: Callable[[], Obj | None], own_writes: OwnWrites) -> None:
        self.builders = builders
        self.kind = builders.kind
        self.obj = CustomObject(api_client, builders.group, builders.version, builders.plural, namespace,
                                object_name, cached, own_writes)
        self.stable, self.candidate, self.port, self.section = stable, candidate, port, section

    def access(self) -> Access:
        """May the rollout write its rule (RouterError: the route is missing)."""
        return access(self.obj.read(), self.builders.shape, self.stable, self.candidate, self.section)

    def set_route(self, weight: int, mirror: int, header: HeaderRoute | None = None, compare: bool = False) -> None:
        build = self.builders
        mirror_to = mirror_targets(self.candidate)[1] if compare else self.candidate

        def change(current: Obj) -> Obj:
            routed = build.with_route(current, self.stable, self.candidate, self.port, weight, mirror, self.section,
                                      mirror_to)
            return build.with_header_route(routed, self.stable, self.candidate, self.port, header, self.section)

        stored = self.obj.update(change)
        # The write's answer is the stored object: verifying it costs no extra request.
        seen = build.read_route(stored, self.stable, self.candidate, self.section)
        if seen != (weight, mirror):
            raise RouterError(f"route stores weight/mirror {seen} after writing {(weight, mirror)}")

    def preview_release(self) -> Release:
        """What giving the rule back would leave, without writing it."""
        return release(self.obj.read(), self.builders.shape, self.stable, self.candidate, self.section)

    def release(self) -> None:
        """Give the rule back as it was before us, minus our backends (Flagger's Finalize)."""
        self.obj.update(lambda current: release(current, self.builders.shape, self.stable, self.candidate,
                                                self.section).route)
