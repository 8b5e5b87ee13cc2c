"""How actions are carried out, once, for every target: the cluster in production, a world in memory in tests.

The dispatch is the executor's only logic, so the unit tests that drive the
engine through an in-memory target see exactly what the operator does.
Events are not carried out here: they are told after the status that records
them is stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from controller.engine.actions import (
    Action,
    DeleteRevision,
    EnsureComparator,
    EnsureRevision,
    OrphanRevision,
    ReleaseRoute,
    RemoveComparator,
    ScaleRevision,
    SelectServices,
    SetRoute,
)


class Target(Protocol):
    def revision_exists(self, revision: str) -> bool: ...

    def ensure_revision(self, revision: str, replicas: int) -> None: ...

    def scale_revision(self, revision: str, replicas: int) -> None: ...

    def delete_revision(self, revision: str) -> None: ...

    def orphan_revision(self, revision: str) -> None: ...

    def select_services(self, stable: str, candidate: str) -> None: ...

    def set_route(self, weight: int, mirror: int, header: tuple[str, str] | None, compare: bool) -> None: ...

    def release_route(self) -> None: ...

    def ensure_comparator(self, step: int) -> None: ...

    def remove_comparator(self) -> None: ...


def execute(actions: Iterable[Action], target: Target) -> None:
    for action in actions:
        if isinstance(action, EnsureRevision):
            if not (action.create_only and target.revision_exists(action.revision)):
                target.ensure_revision(action.revision, action.replicas)
        elif isinstance(action, ScaleRevision):
            target.scale_revision(action.revision, action.replicas)
        elif isinstance(action, DeleteRevision):
            target.delete_revision(action.revision)
        elif isinstance(action, OrphanRevision):
            target.orphan_revision(action.revision)
        elif isinstance(action, SelectServices):
            target.select_services(action.stable, action.candidate)
        elif isinstance(action, SetRoute):
            target.set_route(action.weight, action.mirror, action.header, action.compare)
        elif isinstance(action, ReleaseRoute):
            target.release_route()
        elif isinstance(action, EnsureComparator):
            target.ensure_comparator(action.step)
        elif isinstance(action, RemoveComparator):
            target.remove_comparator()
