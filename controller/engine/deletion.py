"""What deleting a ModelRollout does to traffic and workloads: never an outage.

All traffic returns to the stable first (one route write). With the Orphan
policy the stable keeps serving behind both Services, now without owner, so the
user's route still resolves; the other revisions are removed. With Delete the
garbage collector removes everything once the finalizer is gone.
"""

from __future__ import annotations

from controller.api import ModelRolloutSpec, ModelRolloutStatus
from controller.engine.actions import (
    Action,
    DeleteRevision,
    EmitEvent,
    OrphanRevision,
    ScaleRevision,
    SelectServices,
    SetRoute,
)


def finalize(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> list[Action]:
    stable = status.stable_revision
    if stable is None:
        return []  # Nothing was deployed: nothing serves, nothing to keep.
    leftovers = sorted(r for r in (status.candidate_revision, status.previous_stable_revision)
                       if r is not None and r != stable)
    # Without a mesh there is no route: the candidate's pods stop with it.
    actions: list[Action] = [] if spec.traffic_routing.replicas is not None else [SetRoute(0, 0)]
    actions.append(SelectServices(stable=stable, candidate=stable))
    actions += [DeleteRevision(revision) for revision in leftovers]
    actions.append(ScaleRevision(stable, spec.replicas))  # Its full size again: a capacity swap may have shrunk it.
    if spec.deletion_policy == "Orphan":
        actions.append(OrphanRevision(stable))
        message = f"deleted: stable {stable} keeps serving all traffic, without owner (deletionPolicy Orphan)"
    else:
        message = "deleted: all traffic on stable, then every object removed (deletionPolicy Delete)"
    return [*actions, EmitEvent("Normal", "Finalized", message)]
