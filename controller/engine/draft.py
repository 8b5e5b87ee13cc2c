"""The engine's working state for one pass: the status being written, the actions gathered, the wake-up.

Every module of the engine writes through a Draft; `finish` turns it into the Transition the
reconciler carries out, with the state (status.state) it arrives in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ConfigDict

from controller.analysis.readings import compared_step
from controller.api import (
    ConditionType,
    EventReason,
    ModelRolloutSpec,
    ModelRolloutStatus,
    PauseReason,
    Phase,
    RolloutState,
)
from controller.durations import parse_duration
from controller.engine.actions import (
    Action,
    EmitEvent,
    EnsureComparator,
    EnsureRevision,
    RemoveComparator,
    ScaleRevision,
    SelectServices,
    SetRoute,
)
from controller.engine.conditions import find_condition, is_true, set_condition
from controller.engine.observations import Observations
from controller.engine.routes import candidate_replicas, swap_sizes
from controller.timestamps import format_timestamp, parse_timestamp

# The Paused condition's reason for each pause.
PAUSED_BECAUSE = {PauseReason.USER: "PausedByUser", PauseReason.STEP: "PauseStep",
                  PauseReason.ANALYSIS: "AnalysisError", PauseReason.HALTED: "AnalysisHalted",
                  PauseReason.ROUTE: "RouteTakenBack", PauseReason.GATEWAY: "RouteNotAccepted"}


# Status messages stay one line; details live in status.analysis and the Events.
MAX_MESSAGE = 240
# Counts this many analysis intervals old at a look: Prometheus scrapes less often than the analysis looks.
SLOW_SCRAPES = 2.0


# Readiness arrives by watch events; this re-check only covers a missed one.
READINESS_RECHECK = timedelta(seconds=15)


# How often a rollout waiting for GPUs looks again (a pod or node changing wakes no rollout).
CAPACITY_RECHECK = timedelta(seconds=15)


# How often a warming candidate's latency is read again.
WARMUP_RECHECK = timedelta(seconds=5)


@dataclass(frozen=True)
class Transition:
    actions: list[Action]
    status: ModelRolloutStatus
    # The next moment this rollout needs a reconcile although nothing in the cluster changed
    # (a step's end, an analysis tick, the keep-warm scale-down, a readiness re-check).
    wake_at: datetime | None = None
    # The manual action annotation was taken (into status.pendingAction, or refused): drop it once
    # the status is stored.
    takes_request: bool = False
    # The wake is only an analysis tick: it may wait behind actions, route changes and step ends.
    routine: bool = False


class WorkingStatus(ModelRolloutStatus):
    """The engine's typed working copy: mutable, and every assignment validated against the model."""

    model_config = ConfigDict(frozen=False, validate_assignment=True)


@dataclass
class Draft:
    """The status being written (`s`, a typed working copy of `status`), and the actions gathered so far."""

    spec: ModelRolloutSpec
    status: ModelRolloutStatus
    now: datetime
    # What this pass saw of the world (and read: the analysis' signal, the warm-up).
    seen: Observations
    s: WorkingStatus = field(init=False)
    actions: list[Action] = field(default_factory=list)
    wake_at: datetime | None = None
    routine: bool = False
    selected: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.s = WorkingStatus.model_validate(self.status.model_dump())
        # What the Services select as the reconcile starts, as the last transition left them.
        stable = self.status.stable_revision or ""
        self.selected = (stable, self.status.candidate_revision or self.status.previous_stable_revision or stable)

    def wake(self, when: datetime, routine: bool = False) -> None:
        """Ask for a reconcile at `when` (the earliest of all asks wins; at a tie, the one that is not routine)."""
        if self.wake_at is None or when < self.wake_at:
            self.wake_at, self.routine = when, routine
        elif when == self.wake_at:
            self.routine = self.routine and routine

    @property
    def stable(self) -> str:
        assert self.s.stable_revision is not None, "past the first deploy there is always a stable"
        return self.s.stable_revision

    @property
    def candidate(self) -> str:
        assert self.s.candidate_revision is not None, "only called while a candidate exists"
        return self.s.candidate_revision

    @property
    def previous(self) -> str:
        assert self.s.previous_stable_revision is not None, "only called within the keep-warm window"
        return self.s.previous_stable_revision

    @property
    def step_started(self) -> datetime:
        assert self.s.step_started_at is not None, "only called while a step runs"
        return parse_timestamp(self.s.step_started_at)

    def set(self, **values: Any) -> None:
        """Several fields at once; each is checked against the status model as it is assigned."""
        for name, value in values.items():
            setattr(self.s, name, value)

    def condition(self, type_: ConditionType, status: bool | Literal["True", "False", "Unknown"], reason: str,
                  message: str = "") -> None:
        stamp = format_timestamp(self.now)
        value: Literal["True", "False", "Unknown"] = ("True" if status else "False") if isinstance(status, bool) \
            else status
        conditions = set_condition(self.s.conditions, type_.value, value, reason, message, stamp)
        self.set(conditions=conditions)

    def event(self, reason: EventReason, message: str, warning: bool = False) -> None:
        self.actions.append(EmitEvent("Warning" if warning else "Normal", reason, message))

    @property
    def replicas_mode(self) -> bool:
        return self.spec.traffic_routing.replicas is not None

    @property
    def swap(self) -> bool:
        return self.spec.strategy.capacity.policy == "swap"

    def swap_sizes(self, index: int | None = None) -> tuple[int, int]:
        """Under capacity swap, (stable, candidate) replicas for step `index` (default: the current one)."""
        step = self.s.current_step if index is None else index
        return swap_sizes(self.spec.strategy.steps, step, self.spec.replicas, self.spec.strategy.capacity.min_available)

    def resize(self) -> None:
        """Under capacity swap: the stable shrinks first, so that its GPUs are free for the candidate's new pods."""
        stable, candidate = self.swap_sizes()
        self.actions.append(ScaleRevision(self.stable, stable))
        self.actions.append(EnsureRevision(self.candidate, candidate))

    def select(self, stable: str, candidate: str) -> None:
        self.actions.append(SelectServices(stable=stable, candidate=candidate))
        self.selected = (stable, candidate)

    def route(self, weight: int, mirror: int, header: tuple[str, str] | None = None, compare: bool = False) -> None:
        if not self.replicas_mode:
            self.actions.append(SetRoute(weight, mirror, header, compare and mirror > 0))
        elif self.selected[1] != self.selected[0] and self.s.phase in (Phase.PROGRESSING, Phase.PAUSED):
            # No mesh: the weight is the candidate's replica count (the stable keeps its own).
            self.actions.append(ScaleRevision(self.selected[1], candidate_replicas(self.spec.replicas, weight)))
        self.set(canary_weight=weight, mirror_percent=mirror)

    def standing(self, type_: ConditionType, why: str | None, cleared: str) -> None:
        """A standing warning: one Warning Event when it rises, the condition True while `why` holds, and
        False (reason `cleared`) once it no longer does."""
        if why is not None and not is_true(self.s.conditions, type_.value):
            self.event(EventReason(type_.value), why, warning=True)
        if why is not None:
            self.condition(type_, True, type_.value, why)
        elif find_condition(self.s.conditions, type_.value) is not None:
            self.condition(type_, False, cleared)

    def watch_errors(self) -> None:
        """Silence is a defect: say, standing, when no measurement can see failed requests."""
        why = self.spec.analysis.errors_unwatched() if self.spec.analysis is not None else None
        self.standing(ConditionType.ERRORS_UNWATCHED, why, "ErrorsWatched")

    def watch_scrapes(self) -> None:
        """Say, standing, when Prometheus scrapes the pods less often than the analysis looks."""
        oldest = self.s.analysis.oldest_scrape_seconds if self.s.analysis is not None else None
        interval = parse_duration(self.spec.analysis.interval) if self.spec.analysis is not None else None
        why = None
        if oldest is not None and interval is not None and oldest > SLOW_SCRAPES * interval:
            why = (f"the request counts were {oldest:.0f} s old at a look, against analysis.interval "
                   f"{interval:g}s: Prometheus scrapes these pods less often than the analysis looks, so most looks "
                   f"count nothing new; scrape them every {interval:g}s or less")
        self.standing(ConditionType.SCRAPES_SLOW, why, "ScrapesInTime")

    def watch_comparison(self) -> None:
        """Say, standing, when a shadow step's comparator compares nothing (a path no answer has)."""
        comparison = self.s.analysis.comparison if self.s.analysis is not None else None
        blocked = comparison.blocked if comparison is not None and self.s.phase in (
            Phase.PROGRESSING, Phase.PAUSED) else None
        self.standing(ConditionType.COMPARISON_BLOCKED, blocked, "Comparing")

    def finish(self, generation: int) -> Transition:
        self.watch_errors()
        self.watch_scrapes()
        self.watch_comparison()
        steps = len(self.spec.strategy.steps)
        candidate = self.s.candidate_revision
        phase = self.s.phase
        if candidate and phase in (Phase.PROGRESSING, Phase.PAUSED):
            label = f"{min(self.s.current_step + 1, steps)}/{steps}"
        elif phase == Phase.COMPLETED and self.s.previous_stable_revision:
            label = f"{steps}/{steps}"
        else:
            label = ""
        self.set(observed_generation=generation, step_label=label, message=str(self.s.message)[:MAX_MESSAGE],
                 state=state_of(self.s))
        final = ModelRolloutStatus.model_validate(self.s.model_dump())
        actions = _last_route_wins(self.actions)
        if any(step.shadow is not None and step.shadow.compare is not None for step in self.spec.strategy.steps):
            going_on = bool(candidate) and phase in (Phase.PROGRESSING, Phase.PAUSED)
            carried = compared_step(self.spec, self.s.current_step) if going_on else None
            actions = _with_comparator(actions, self.s.current_step, carried)
        return Transition(actions, final, self.wake_at, routine=self.wake_at is not None and self.routine)


def _last_route_wins(actions: list[Action]) -> list[Action]:
    """Drop a route write that a later one replaces with nothing but Events in between.

    A step that ends in the same reconcile it starts in must not write its own
    weights first: a crash after the later write would replay the earlier one and
    move traffic backwards.
    """
    kept: list[Action] = []
    for action in actions:
        if isinstance(action, SetRoute):
            earlier = next((i for i in range(len(kept) - 1, -1, -1) if not isinstance(kept[i], EmitEvent)), None)
            if earlier is not None and isinstance(kept[earlier], SetRoute):
                del kept[earlier]
        kept.append(action)
    return kept


def _with_comparator(actions: list[Action], step: int, carried: int | None) -> list[Action]:
    """The comparator runs while the route mirrors to it: made sure of just before that route is
    written, removed once a route is written that does not. Without a route write, as it was. A
    compared step that takes feedback (`carried`, earlier than `step`) keeps its comparator through the
    rollout's later steps, unmirrored, for the labels that arrive after it."""
    last = next((i for i in range(len(actions) - 1, -1, -1) if isinstance(actions[i], SetRoute)), None)
    if last is None:
        return actions
    route = actions[last]
    assert isinstance(route, SetRoute)
    if route.compare:
        return [*actions[:last], EnsureComparator(step), *actions[last:]]
    if carried is not None and carried != step:
        return [*actions, EnsureComparator(carried)]
    return [*actions, RemoveComparator()]


def state_of(status: ModelRolloutStatus) -> RolloutState:
    """The state a status stands in: what its phase, candidate and pause reason say together."""
    phase, candidate = status.phase, status.candidate_revision
    if status.stable_revision is None:
        return RolloutState.NEW
    if candidate is not None and phase in (Phase.PROGRESSING, Phase.PAUSED):
        return {None: RolloutState.RUNNING, PauseReason.STEP: RolloutState.AT_PAUSE_STEP,
                PauseReason.HALTED: RolloutState.HALTED}.get(status.pause_reason, RolloutState.PAUSED)
    if candidate is not None and phase == Phase.ROLLED_BACK:
        return RolloutState.ROLLED_BACK
    if phase == Phase.COMPLETED and status.previous_stable_revision:
        return RolloutState.WARM
    if phase == Phase.PROGRESSING:
        return RolloutState.DEPLOYING
    return RolloutState.STABLE
