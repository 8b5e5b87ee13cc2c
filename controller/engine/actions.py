"""What the engine asks the I/O layer to do. Every action is an idempotent 'make it so'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controller.api import EventReason


@dataclass(frozen=True)
class EnsureRevision:
    """The Deployment for `revision` exists, from the current spec template, with `replicas`.

    With `create_only`, an existing Deployment keeps its size (under replicas routing the
    candidate's size is its traffic share, set by ScaleRevision)."""

    revision: str
    replicas: int
    create_only: bool = False


@dataclass(frozen=True)
class ScaleRevision:
    """An existing revision's Deployment runs `replicas` (its template may no longer be in the spec)."""

    revision: str
    replicas: int


@dataclass(frozen=True)
class DeleteRevision:
    revision: str


@dataclass(frozen=True)
class OrphanRevision:
    """The revision's Deployment and the rollout's Services lose their owner reference: they
    outlive the ModelRollout and keep serving."""

    revision: str


@dataclass(frozen=True)
class SelectServices:
    """The -stable and -candidate Services select these revisions' pods."""

    stable: str
    candidate: str


@dataclass(frozen=True)
class SetRoute:
    """`weight` percent of live traffic to the candidate Service, `mirror` percent mirrored to it (to
    the comparator instead with `compare`), and requests with `header` (name, value) always to the
    candidate; one write."""

    weight: int
    mirror: int
    header: tuple[str, str] | None = None
    compare: bool = False


@dataclass(frozen=True)
class EnsureComparator:
    """The shadow step's comparator (a Deployment and a Service, `<rollout>-compare`, owned by the
    rollout) runs with this step's compare spec."""

    step: int


@dataclass(frozen=True)
class RemoveComparator:
    """No comparator runs: after the last compared shadow step, on abort, rollback and promotion."""


@dataclass(frozen=True)
class ReleaseRoute:
    """The route's rule as it was before the rollout managed it, minus our backends, mirror and
    header rule (Flagger's Finalize); a rule not ours is left as it is."""


@dataclass(frozen=True)
class EmitEvent:
    type: Literal["Normal", "Warning"]
    reason: EventReason
    message: str


Action = (EnsureRevision | ScaleRevision | DeleteRevision | OrphanRevision | SelectServices | SetRoute
          | ReleaseRoute | EnsureComparator | RemoveComparator | EmitEvent)
