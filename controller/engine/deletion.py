"""What deleting a ModelRollout does to traffic and workloads: never an outage.

All traffic returns to the stable first (one route write), then the route's rule is given
back as it was before the rollout managed it, minus our backends. With the Orphan policy the
stable keeps serving behind both Services, now without owner; the other revisions are removed.
With Delete the garbage collector removes everything once the finalizer is gone, unless the
route still sends traffic to our Services (it named them before us, or it is gone or no longer
ours to give back): then they and the stable are kept, and an Event says why.
"""

from __future__ import annotations

from controller.api import EventReason, ModelRolloutSpec, ModelRolloutStatus
from controller.engine.actions import (
    Action,
    DeleteRevision,
    EmitEvent,
    OrphanRevision,
    ReleaseRoute,
    ScaleRevision,
    SelectServices,
    SetRoute,
)
from controller.engine.observations import RouteHandback


def finalize(spec: ModelRolloutSpec, status: ModelRolloutStatus, handback: RouteHandback | None) -> list[Action]:
    """`handback` is None without a mesh, where there is no route."""
    stable = status.stable_revision
    if stable is None:
        return []  # Nothing was deployed: nothing serves, nothing to keep.
    leftovers = sorted(r for r in (status.candidate_revision, status.previous_stable_revision)
                       if r is not None and r != stable)
    actions: list[Action] = [SetRoute(0, 0)] if handback is not None and handback.writable else []
    actions.append(SelectServices(stable=stable, candidate=stable))
    actions += [DeleteRevision(revision) for revision in leftovers]
    actions.append(ScaleRevision(stable, spec.replicas))  # Its full size again: a capacity swap may have shrunk it.
    if handback is not None and handback.writable:
        actions.append(ReleaseRoute())
    kept = handback.keep_services if handback is not None else None
    if spec.deletion_policy == "Orphan":
        actions.append(OrphanRevision(stable))
        message = f"deleted: stable {stable} keeps serving all traffic, without owner (deletionPolicy Orphan)"
    elif kept is not None:
        actions.append(OrphanRevision(stable))
        actions.append(EmitEvent("Warning", EventReason.SERVICES_KEPT, f"deletionPolicy Delete: the Services and "
                                 f"stable {stable} are kept, without owner, because {kept}"))
        message = f"deleted: stable {stable} and the Services kept (they still serve the route)"
    else:
        message = "deleted: the route given back, then every object removed (deletionPolicy Delete)"
    return [*actions, EmitEvent("Normal", EventReason.FINALIZED, message)]
