"""The rollout state machine.

`reconcile` is level-triggered: every call returns the whole desired traffic
state (services and route) for the status it produces, so re-running it after
a crash converges the world instead of repeating a step. Transitions that move
traffic between revisions emit an ordered action list in which every
intermediate state serves a single, known revision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict

from controller.analysis.readings import AnalysisSignal, WarmupReading
from controller.api import Action as ManualAction
from controller.api import (
    AnalysisVerdict,
    ConditionType,
    ModelRolloutSpec,
    ModelRolloutStatus,
    PauseReason,
    Phase,
    Verdict,
    WarmupStatus,
)
from controller.durations import parse_duration
from controller.engine.actions import (
    Action,
    DeleteRevision,
    EmitEvent,
    EnsureRevision,
    ScaleRevision,
    SelectServices,
    SetRoute,
)
from controller.engine.conditions import find_condition, is_true, set_condition
from controller.engine.observations import Observations, RouteRefusal
from controller.engine.routes import candidate_replicas, route_for_step, swap_sizes
from controller.timestamps import format_timestamp, parse_timestamp

# The Paused condition's reason for each pause.
PAUSED_BECAUSE = {PauseReason.USER: "PausedByUser", PauseReason.STEP: "PauseStep",
                  PauseReason.ANALYSIS: "AnalysisError", PauseReason.HALTED: "AnalysisHalted",
                  PauseReason.ROUTE: "RouteTakenBack"}
# Status messages stay one line; details live in status.analysis and the Events.
MAX_MESSAGE = 240
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


class _WorkingStatus(ModelRolloutStatus):
    """The engine's typed working copy: mutable, and every assignment validated against the model."""

    model_config = ConfigDict(frozen=False, validate_assignment=True)


@dataclass
class _Draft:
    """The status being written (`s`, a typed working copy of `status`), and the actions gathered so far."""

    spec: ModelRolloutSpec
    status: ModelRolloutStatus
    now: datetime
    s: _WorkingStatus = field(init=False)
    actions: list[Action] = field(default_factory=list)
    wake_at: datetime | None = None
    selected: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.s = _WorkingStatus.model_validate(self.status.model_dump())
        # What the Services select as the reconcile starts, as the last transition left them.
        stable = self.status.stable_revision or ""
        self.selected = (stable, self.status.candidate_revision or self.status.previous_stable_revision or stable)

    def wake(self, when: datetime) -> None:
        """Ask for a reconcile at `when` (the earliest of all asks wins)."""
        if self.wake_at is None or when < self.wake_at:
            self.wake_at = when

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

    def condition(self, type_: ConditionType, status: bool, reason: str, message: str = "") -> None:
        stamp = format_timestamp(self.now)
        conditions = set_condition(
            self.s.conditions, type_.value, "True" if status else "False", reason, message, stamp
        )
        self.set(conditions=conditions)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
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

    def route(self, weight: int, mirror: int, header: tuple[str, str] | None = None) -> None:
        if not self.replicas_mode:
            self.actions.append(SetRoute(weight, mirror, header))
        elif self.selected[1] != self.selected[0] and self.s.phase in (Phase.PROGRESSING, Phase.PAUSED):
            # No mesh: the weight is the candidate's replica count (the stable keeps its own).
            self.actions.append(ScaleRevision(self.selected[1], candidate_replicas(self.spec.replicas, weight)))
        self.set(canary_weight=weight, mirror_percent=mirror)

    def watch_errors(self) -> None:
        """Silence is a defect: say, standing, when no measurement can see failed requests."""
        why = self.spec.analysis.errors_unwatched() if self.spec.analysis is not None else None
        if why is not None and not is_true(self.s.conditions, ConditionType.ERRORS_UNWATCHED.value):
            self.event("ErrorsUnwatched", why, warning=True)
        if why is not None:
            self.condition(ConditionType.ERRORS_UNWATCHED, True, "ErrorsUnwatched", why)
        elif find_condition(self.s.conditions, ConditionType.ERRORS_UNWATCHED.value) is not None:
            self.condition(ConditionType.ERRORS_UNWATCHED, False, "ErrorsWatched")

    def finish(self, generation: int) -> Transition:
        self.watch_errors()
        steps = len(self.spec.strategy.steps)
        candidate = self.s.candidate_revision
        phase = self.s.phase
        if candidate and phase in (Phase.PROGRESSING, Phase.PAUSED):
            label = f"{min(self.s.current_step + 1, steps)}/{steps}"
        elif phase == Phase.COMPLETED and self.s.previous_stable_revision:
            label = f"{steps}/{steps}"
        else:
            label = ""
        self.set(observed_generation=generation, step_label=label, message=str(self.s.message)[:MAX_MESSAGE])
        final = ModelRolloutStatus.model_validate(self.s.model_dump())
        return Transition(_last_route_wins(self.actions), final, self.wake_at)


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


def reconcile(
    spec: ModelRolloutSpec,
    generation: int,
    status: ModelRolloutStatus,
    observations: Observations,
    now: datetime,
) -> Transition:
    """One reconcile: the actions to take and the status to record after taking them."""
    draft = _Draft(spec, status, now)
    if observations.route_refusal is not None:
        _route_refused(draft, observations.route_refusal)
        return draft.finish(generation)
    _route_handed_back(draft)
    revision = observations.template_revision
    first_deploy_waiting = (
        status.candidate_revision is None and status.phase == Phase.PROGRESSING
        and revision == status.stable_revision
    )
    if status.stable_revision is None or first_deploy_waiting:
        _initial_deploy(draft, revision, observations)
        return draft.finish(generation)

    action = status.pending_action
    draft.set(pending_action=None)
    if action:
        draft.set(last_action=action)

    candidate = status.candidate_revision
    if revision == status.stable_revision and candidate is not None:
        _cancel_candidate(draft, "the template matches the stable revision again")
    elif revision not in (status.stable_revision, candidate):
        _start_rollout(draft, revision)
    elif action:
        _apply_action(draft, action)

    if draft.s.candidate_revision and draft.s.phase in (Phase.PROGRESSING, Phase.PAUSED):
        _progress(draft, observations)
    elif draft.s.candidate_revision is None:
        _steady_state(draft)
    else:
        _rolled_back_state(draft)
    return draft.finish(generation)


def failed(status: ModelRolloutStatus, reason: str, detail: str, now: datetime) -> Transition:
    """A reconcile failed: say so in a condition and an Event (once per distinct failure).

    The traffic state stays the one `status` records: the retry repeats the same writes.
    """
    conditions = set_condition(status.conditions, ConditionType.PROGRESSING.value, "False", reason, detail,
                               format_timestamp(now))
    message = f"{reason}: {detail}"[:MAX_MESSAGE]
    new_status = status.model_copy(update={"conditions": conditions, "message": message})
    events: list[Action] = [] if status.message == message else [EmitEvent("Warning", reason, detail)]
    return Transition(events, new_status)


def invalid_spec(status: ModelRolloutStatus, generation: int, message: str, now: datetime) -> Transition:
    """An invalid spec changes nothing in the cluster: traffic stays exactly where it was."""
    conditions = set_condition(status.conditions, ConditionType.INVALID_SPEC.value, "True",
                               "InvalidSpec", message, format_timestamp(now))
    new_status = status.model_copy(update={
        "conditions": conditions, "message": f"invalid spec: {message}", "observed_generation": generation,
    })
    event = EmitEvent("Warning", "InvalidSpec", message)
    return Transition([event] if status.message != new_status.message else [], new_status)


# --- transitions -----------------------------------------------------------


def _route_managed(draft: _Draft) -> tuple[str, str] | None:
    """The RouteManaged condition's (status, reason), if any."""
    found = find_condition(draft.s.conditions, ConditionType.ROUTE_MANAGED.value)
    return (found.status, found.reason) if found is not None else None


def _route_refused(draft: _Draft, refusal: RouteRefusal) -> None:
    """Not ours to write: nothing at all is done (no route, no workload), and a rollout in flight
    pauses until the rule is handed back. Pending manual actions wait too."""
    if _route_managed(draft) != ("False", refusal.access.value):
        draft.event(refusal.access.value, refusal.message, warning=True)
    draft.condition(ConditionType.ROUTE_MANAGED, False, refusal.access.value, refusal.message)
    draft.set(message=refusal.message)
    if draft.s.candidate_revision is not None and draft.s.phase in (Phase.PROGRESSING, Phase.PAUSED):
        if draft.s.pause_reason is None:
            draft.set(pause_reason=PauseReason.ROUTE)
        draft.set(phase=Phase.PAUSED)
        draft.condition(ConditionType.PAUSED, True, PAUSED_BECAUSE[PauseReason.ROUTE], refusal.message)


def _route_handed_back(draft: _Draft) -> None:
    """The rule is ours again: a pause that was the route's ends, and its step starts over, since
    the traffic it measured was not the step's."""
    if _route_managed(draft) not in (None, ("True", "HandedBack")):
        draft.condition(ConditionType.ROUTE_MANAGED, True, "HandedBack", "the route's rule is the rollout's to manage")
        draft.event("RouteHandedBack", "the route's rule is the rollout's to manage again")
    if draft.s.pause_reason == PauseReason.ROUTE:
        draft.set(pause_reason=None, step_started_at=None, step_ends_at=None)


def _initial_deploy(draft: _Draft, revision: str, observations: Observations) -> None:
    """No stable yet: the first template becomes the stable directly, as Argo does."""
    draft.actions.append(EnsureRevision(revision, draft.spec.replicas))
    draft.select(revision, revision)
    draft.route(0, 0)
    draft.set(stable_revision=revision)
    draft.condition(ConditionType.INVALID_SPEC, False, "Valid")
    if observations.stable_ready:
        draft.set(phase=Phase.COMPLETED, message=f"revision {revision} serves all traffic")
        draft.condition(ConditionType.AVAILABLE, True, "StableReady", f"revision {revision} is ready")
        draft.condition(ConditionType.PROGRESSING, False, "Deployed")
        draft.condition(ConditionType.COMPLETED, True, "Deployed", f"first revision {revision} serves all traffic")
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, False, "Scheduled")
        draft.event("Deployed", f"first revision {revision} is ready and serves all traffic")
        return
    draft.set(phase=Phase.PROGRESSING)
    draft.condition(ConditionType.PROGRESSING, True, "Deploying")
    draft.condition(ConditionType.COMPLETED, False, "Deploying")
    draft.wake(draft.now + READINESS_RECHECK)
    reason = observations.stable_unschedulable
    if reason:
        message = f"first revision {revision} cannot be scheduled: {reason}"
        draft.condition(ConditionType.AVAILABLE, False, "Unschedulable", reason)
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, True, "Unschedulable", reason)
        if draft.s.message != message:
            draft.event("Unschedulable", message, warning=True)
    else:
        message = f"waiting for revision {revision} to become ready"
        draft.condition(ConditionType.AVAILABLE, False, "StableNotReady", "waiting for replicas")
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, False, "Scheduled")
    draft.set(message=message)


def _start_rollout(draft: _Draft, revision: str) -> None:
    old_candidate = draft.s.candidate_revision
    stable = draft.stable
    # The warm standby and any earlier candidate free their GPUs for the new one.
    for leftover in sorted(r for r in (old_candidate, draft.s.previous_stable_revision)
                           if r is not None and r != stable):
        draft.actions.append(DeleteRevision(leftover))
    restarted = old_candidate is not None and draft.s.phase in (Phase.PROGRESSING, Phase.PAUSED)
    # Back to 100% stable before the candidate Service selects the new revision.
    draft.route(0, 0)
    draft.set(
        candidate_revision=revision, previous_stable_revision=None, scale_down_at=None,
        current_step=0, step_started_at=None, step_ends_at=None, phase=Phase.PROGRESSING, pause_reason=None,
        verdict=None, candidate_ready=False, capacity_wait_since=None, warmup=None,
        message=f"rolling out revision {revision}",
    )
    if any(c.type == ConditionType.INSUFFICIENT_CAPACITY.value for c in draft.s.conditions):
        draft.condition(ConditionType.INSUFFICIENT_CAPACITY, False, "RolloutStarted")
    draft.condition(ConditionType.PROGRESSING, True, "RolloutStarted", f"candidate {revision}")
    draft.condition(ConditionType.COMPLETED, False, "RolloutStarted")
    draft.condition(ConditionType.ROLLED_BACK, False, "RolloutStarted")
    draft.condition(ConditionType.PAUSED, False, "RolloutStarted")
    draft.condition(ConditionType.INVALID_SPEC, False, "Valid")
    if restarted:
        draft.event("RolloutRestarted",
                    f"template changed during the rollout; restarting from stable {stable} with {revision}")
    else:
        draft.event("RolloutStarted", f"rolling out {revision} beside stable {stable}")


def _cancel_candidate(draft: _Draft, why: str) -> None:
    candidate = draft.candidate
    stable = draft.stable
    draft.route(0, 0)
    draft.select(stable, stable)
    draft.actions.append(DeleteRevision(candidate))
    draft.set(candidate_revision=None, phase=Phase.COMPLETED, pause_reason=None, step_started_at=None,
              step_ends_at=None, message=f"{why}; candidate {candidate} removed")
    draft.condition(ConditionType.PROGRESSING, False, "CandidateRemoved", why)
    draft.condition(ConditionType.PAUSED, False, "CandidateRemoved")
    draft.event("CandidateRemoved", f"{why}; candidate {candidate} removed")


class Stage(StrEnum):
    """Where a rollout stands, as far as a manual action is concerned."""

    RUNNING = "running"  # a candidate takes steps
    PAUSED = "paused"  # by the user, or by the analysis (measurements failing)
    AT_PAUSE_STEP = "at a pause step"  # waits for a human to go on
    HALTED = "halted"  # the experiment broke (sample-ratio mismatch): a human must look
    ROLLED_BACK = "rolled back"  # the candidate is stopped, all traffic on the stable
    WARM = "completed, old model warm"  # within scaleDownDelaySeconds after a promotion
    SETTLED = "settled"  # nothing to act on


def _stage(draft: _Draft) -> Stage:
    phase, reason = draft.s.phase, draft.s.pause_reason
    if draft.s.candidate_revision is not None and phase in (Phase.PROGRESSING, Phase.PAUSED):
        return {None: Stage.RUNNING, PauseReason.STEP: Stage.AT_PAUSE_STEP,
                PauseReason.HALTED: Stage.HALTED}.get(reason, Stage.PAUSED)
    if draft.s.candidate_revision is not None and phase == Phase.ROLLED_BACK:
        return Stage.ROLLED_BACK
    if phase == Phase.COMPLETED and draft.s.previous_stable_revision:
        return Stage.WARM
    return Stage.SETTLED


def _abort(draft: _Draft) -> None:
    _roll_back(draft, "Aborted", "aborted by the user")


def _pause(draft: _Draft) -> None:
    draft.set(pause_reason=PauseReason.USER)
    draft.event("Paused", "paused by the user")


def _resume(draft: _Draft) -> None:
    draft.set(pause_reason=None)
    draft.event("Resumed", "resumed by the user")


def _resume_past_pause_step(draft: _Draft) -> None:
    _advance(draft, "resumed by the user")
    _resume(draft)


def _resume_halted(draft: _Draft) -> None:
    """A human looked at the broken experiment and let it go on: its evidence starts again."""
    draft.set(pause_reason=None, step_started_at=None, step_ends_at=None)
    draft.event("HaltResumed", "resumed by the user after an analysis halt; the step and its evidence start again")


def _promote(draft: _Draft) -> None:
    draft.set(pause_reason=None)
    _advance(draft, "promoted by the user")


def _promote_full(draft: _Draft) -> None:
    draft.set(pause_reason=None, current_step=len(draft.spec.strategy.steps), step_started_at=None, step_ends_at=None)
    draft.event("PromotedFull", "promoted by the user past all remaining steps")


def _retry(draft: _Draft) -> None:
    draft.set(phase=Phase.PROGRESSING, current_step=0, step_started_at=None, step_ends_at=None, pause_reason=None,
              verdict=None, candidate_ready=False, warmup=None, message="retrying the rollout from the first step")
    draft.condition(ConditionType.ROLLED_BACK, False, "Retried")
    draft.condition(ConditionType.PROGRESSING, True, "Retried")
    draft.event("Retried", f"retrying candidate {draft.candidate} from the first step")


def _apply_action(draft: _Draft, action: ManualAction) -> None:
    stage = _stage(draft)
    transition = ACTION_TABLE.get((stage, action))
    if transition is None:
        draft.event("ActionIgnored", f"{action.value!r} does not apply while the rollout is {stage.value}",
                    warning=True)
        return
    transition(draft)


def _roll_back(draft: _Draft, reason: str, why: str) -> None:
    """One route write back to 100% stable and no mirror; the candidate then stops."""
    draft.route(0, 0)
    draft.actions.append(ScaleRevision(draft.candidate, 0))
    draft.actions.append(ScaleRevision(draft.stable, draft.spec.replicas))  # Under swap it gave up pods.
    draft.set(phase=Phase.ROLLED_BACK, pause_reason=None, step_started_at=None, step_ends_at=None,
              candidate_ready=False, message=f"rolled back: {why}")
    draft.condition(ConditionType.ROLLED_BACK, True, reason, why)
    draft.condition(ConditionType.PROGRESSING, False, reason, why)
    draft.condition(ConditionType.PAUSED, False, reason)
    draft.event("RolledBack", f"{why}; all traffic is back on stable {draft.s.stable_revision}", warning=True)


def _undo(draft: _Draft) -> None:
    """Within the keep-warm window: the old model is still loaded behind the -candidate Service."""
    undone = draft.stable
    previous = draft.previous
    # First write moves all traffic to the warm old model; the rest only renames roles,
    # and in each intermediate state every Service with weight selects `previous`.
    draft.route(100, 0)
    draft.select(previous, previous)
    draft.route(0, 0)
    draft.select(previous, undone)
    draft.actions.append(ScaleRevision(undone, 0))
    draft.set(stable_revision=previous, candidate_revision=undone, previous_stable_revision=None,
              scale_down_at=None, phase=Phase.ROLLED_BACK, message=f"undone: back on {previous}")
    draft.condition(ConditionType.ROLLED_BACK, True, "Undone", f"{undone} undone; {previous} serves all traffic")
    draft.condition(ConditionType.COMPLETED, False, "Undone")
    draft.event("Undone", f"undo: {previous} serves all traffic again; {undone} stopped", warning=True)


def _advance(draft: _Draft, why: str) -> None:
    step = draft.s.current_step
    draft.set(current_step=step + 1, step_started_at=None, step_ends_at=None)
    draft.event("StepCompleted", f"step {step + 1}/{len(draft.spec.strategy.steps)} completed: {why}")


def _hold_promotion(draft: _Draft) -> None:
    """Paused past the last step, before the promotion's route write: traffic stays as recorded until a resume.

    Regression: this went on to the promotion's write with a wake-up at once, and, paused, never completed
    it, so the rollout asked for a reconcile in a loop (found by the property test)."""
    reason = draft.s.pause_reason
    assert reason is not None
    draft.route(draft.s.canary_weight, draft.s.mirror_percent)
    draft.set(phase=Phase.PAUSED, message=f"paused ({reason}) before the promotion")
    draft.condition(ConditionType.PAUSED, True, PAUSED_BECAUSE[reason])


def _begin_promotion(draft: _Draft) -> None:
    """All traffic to the candidate, recorded before the Services swap in the next reconcile."""
    draft.route(100, 0)
    draft.set(step_ends_at=None, message=f"promoting revision {draft.s.candidate_revision}")
    draft.wake(draft.now)


def _complete(draft: _Draft) -> None:
    old = draft.stable
    new = draft.candidate
    delay = draft.spec.strategy.scale_down_delay_seconds
    # The route already sends everything to `new` (`_begin_promotion` wrote that and
    # recorded it). Every action here keeps serving only `new`, so replaying them after a
    # crash never moves traffic back: the stable Service follows, then the route returns to it.
    draft.select(new, new)
    draft.route(0, 0)
    keep_warm = draft.spec.traffic_routing.replicas is None and delay > 0
    if keep_warm:
        draft.select(new, old)
        draft.set(previous_stable_revision=old, scale_down_at=format_timestamp(draft.now + timedelta(seconds=delay)))
    else:
        # Without a router every running pod takes traffic, so the old model cannot wait warm.
        draft.actions.append(DeleteRevision(old))
        draft.set(previous_stable_revision=None, scale_down_at=None)
    draft.set(stable_revision=new, candidate_revision=None, phase=Phase.COMPLETED, pause_reason=None,
              step_started_at=None, step_ends_at=None, current_step=len(draft.spec.strategy.steps),
              message=f"revision {new} promoted" + (f"; {old} stays warm for {delay}s" if keep_warm else ""))
    draft.condition(ConditionType.COMPLETED, True, "RolloutCompleted", f"{new} promoted")
    draft.condition(ConditionType.PROGRESSING, False, "RolloutCompleted")
    draft.condition(ConditionType.PAUSED, False, "RolloutCompleted")
    draft.event("Promoted", f"revision {new} is the stable; {old} " +
                ("stays warm for undo" if keep_warm else "is removed"))


# --- per-state reconciliation ----------------------------------------------


def _steady_state(draft: _Draft) -> None:
    stable = draft.stable
    previous = draft.s.previous_stable_revision
    due = draft.s.scale_down_at
    if previous and due and draft.now >= parse_timestamp(due):
        draft.select(stable, stable)
        draft.actions.append(DeleteRevision(previous))
        draft.set(previous_stable_revision=None, scale_down_at=None)
        draft.event("ScaledDown", f"keep-warm window over: old revision {previous} removed")
        previous = None
    elif previous and due:
        draft.wake(parse_timestamp(due))
    # Under swap the warm old stable holds the GPUs of min_available pods until it is removed.
    held = draft.spec.strategy.capacity.min_available if draft.swap and previous else 0
    draft.actions.append(ScaleRevision(stable, draft.spec.replicas - held))
    draft.select(stable, previous or stable)
    draft.route(0, 0)


def _rolled_back_state(draft: _Draft) -> None:
    stable = draft.stable
    draft.select(stable, draft.candidate)
    draft.route(0, 0)
    # The candidate stops before the stable grows back: under swap its GPUs are the stable's.
    draft.actions.append(ScaleRevision(draft.candidate, 0))
    draft.actions.append(ScaleRevision(stable, draft.spec.replicas))


def _candidate_ready(draft: _Draft, observations: Observations) -> bool:
    """All replicas Ready; without a mesh one Ready pod, since every running pod takes traffic; under swap
    the current step's size (the Deployment may not show this reconcile's resize yet)."""
    if draft.replicas_mode:
        return observations.candidate_any_ready
    if draft.swap:
        return observations.candidate_ready_replicas >= draft.swap_sizes()[1]
    return observations.candidate_ready


def _progress(draft: _Draft, observations: Observations) -> None:
    spec = draft.spec
    stable = draft.stable
    candidate = draft.candidate
    past_steps = draft.s.current_step >= len(spec.strategy.steps)
    recorded_full = (draft.status.canary_weight, draft.status.mirror_percent) == (100, 0)
    if past_steps and recorded_full and draft.status.current_step >= len(spec.strategy.steps) \
            and _candidate_ready(draft, observations) and draft.s.pause_reason is None:
        _complete(draft)
        return
    if _await_capacity(draft, observations):
        return
    _size_revisions(draft)
    draft.select(stable, candidate)
    ready = _candidate_ready(draft, observations)
    if not ready and _resizing(draft, observations):
        # The candidate still serves the last step's share meanwhile: its verdict still counts.
        if not _apply_signal(draft, observations.analysis):
            _hold_for_resize(draft)
        return
    if not ready:
        _hold_for_readiness(draft, observations)
    elif past_steps and draft.s.pause_reason is not None:
        _hold_promotion(draft)
    elif past_steps:
        _begin_promotion(draft)
    else:
        _run_ready(draft, observations)


def _run_ready(draft: _Draft, observations: Observations) -> None:
    """A Ready candidate within its steps: the analysis' verdict, the warm-up, then the step."""
    spec = draft.spec
    if not draft.s.candidate_ready:
        draft.set(candidate_ready=True)
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, False, "Scheduled")
        size = draft.swap_sizes()[1] if draft.swap else spec.replicas
        draft.event("CandidateReady", f"all {size} candidate replicas are ready")

    if _apply_signal(draft, observations.analysis):
        return
    if observations.next_analysis_at is not None:
        draft.wake(observations.next_analysis_at)
    if _warming_up(draft, observations.warmup):
        return
    if draft.s.step_started_at is None:
        _start_step(draft)
    _run_step(draft, observations)


def _size_revisions(draft: _Draft) -> None:
    spec = draft.spec
    if draft.swap:
        draft.resize()
    elif draft.replicas_mode:
        # Its size is its traffic share: created with one warm pod, then sized by each route.
        draft.actions.append(ScaleRevision(draft.stable, spec.replicas))
        draft.actions.append(EnsureRevision(draft.candidate, candidate_replicas(spec.replicas, 0), create_only=True))
    else:
        draft.actions.append(ScaleRevision(draft.stable, spec.replicas))
        draft.actions.append(EnsureRevision(draft.candidate, spec.replicas))


def _apply_signal(draft: _Draft, signal: AnalysisSignal | None) -> bool:
    """Act on the analysis verdict; True when it rolled the rollout back."""
    spec = draft.spec
    if signal is not None and signal.verdict == AnalysisVerdict.FAIL:
        _roll_back(draft, "AnalysisFailed", signal.reason)
        return True
    if signal is not None and signal.verdict == AnalysisVerdict.ERROR:
        if spec.analysis is not None and spec.analysis.on_error == "rollback":
            _roll_back(draft, "AnalysisError", signal.reason)
            return True
        if draft.s.pause_reason is None:
            draft.set(pause_reason=PauseReason.ANALYSIS)
            draft.event("AnalysisError", f"paused: {signal.reason}", warning=True)
    elif draft.s.pause_reason == PauseReason.ANALYSIS:
        # Measurements are back: the pause was the analysis's, so is the resume.
        draft.set(pause_reason=None)
        draft.event("AnalysisRecovered", "measurements are back; resuming")
    if signal is not None and signal.verdict == AnalysisVerdict.HALT and draft.s.pause_reason is None:
        draft.set(pause_reason=PauseReason.HALTED)
        draft.event("AnalysisHalted", f"halted: {signal.reason}", warning=True)
    return False


def _start_step(draft: _Draft) -> None:
    index = draft.s.current_step
    steps = draft.spec.strategy.steps
    duration = draft.spec.step_seconds(index)
    ends = format_timestamp(draft.now + timedelta(seconds=duration)) if duration is not None else None
    draft.set(step_started_at=format_timestamp(draft.now), step_ends_at=ends)
    draft.event("StepStarted", f"step {index + 1}/{len(steps)}: {steps[index].kind}")
    if draft.spec.analysis is not None:
        draft.wake(draft.now)  # The step's first analysis runs at once, not at its first interval.


def _await_capacity(draft: _Draft, observations: Observations) -> bool:
    """Hold the rollout, before its candidate exists, while its GPUs are not free (True: holding).

    Nothing else changes meanwhile: the candidate is not created and all traffic stays on the stable.
    `wait` gives up after its timeout; `surge` waits as long as it takes."""
    shortfall, capacity = observations.capacity_shortfall, draft.spec.strategy.capacity
    waiting_since = draft.s.capacity_wait_since
    if shortfall is None:
        if waiting_since is not None:
            draft.set(capacity_wait_since=None)
            draft.condition(ConditionType.INSUFFICIENT_CAPACITY, False, "CapacityAvailable")
            draft.event("CapacityAvailable", "the candidate's resources are free: creating it")
        return False
    if waiting_since is None:
        draft.set(capacity_wait_since=format_timestamp(draft.now))
        draft.event("InsufficientCapacity", f"candidate {draft.candidate} not created: {shortfall}", warning=True)
    draft.condition(ConditionType.INSUFFICIENT_CAPACITY, True, "InsufficientCapacity", shortfall)
    since = parse_timestamp(waiting_since) if waiting_since else draft.now
    if capacity.policy == "wait" and (draft.now - since).total_seconds() >= parse_duration(capacity.timeout):
        draft.set(capacity_wait_since=None)
        _roll_back(draft, "CapacityTimeout", f"no capacity for the candidate within {capacity.timeout}: {shortfall}")
        return True
    draft.set(message=f"waiting for capacity: {shortfall}")
    draft.wake(draft.now + CAPACITY_RECHECK)
    return True


def _resizing(draft: _Draft, observations: Observations) -> bool:
    """Under swap, between steps: the next step's pods are on their way while the last step's are Ready.

    The last step's route then stays, and the next step starts (its clock, its route) once its pods are Ready."""
    index = draft.s.current_step
    if not draft.swap or index == 0 or draft.s.step_started_at is not None or not draft.s.candidate_ready:
        return False
    return observations.candidate_ready_replicas >= draft.swap_sizes(index - 1)[1]


def _hold_for_resize(draft: _Draft) -> None:
    index = draft.s.current_step
    steps = draft.spec.strategy.steps
    _route_of_step(draft, index - 1)
    stable, candidate = draft.swap_sizes()
    what = "the promotion" if index >= len(steps) else f"step {index + 1}/{len(steps)}"
    draft.set(message=f"making room for {what}: stable to {stable}, candidate to {candidate} replicas")
    draft.wake(draft.now + READINESS_RECHECK)


def _route_of_step(draft: _Draft, index: int) -> None:
    step = draft.spec.strategy.steps[index]
    weight, mirror = route_for_step(draft.spec.strategy.steps, index)
    cohort = step.ab_test.header_route if step.ab_test is not None else None
    draft.route(weight, mirror, (cohort.name, cohort.value) if cohort else None)


def _warming_up(draft: _Draft, reading: WarmupReading | None) -> bool:
    """Before the first step, with strategy.warmup: mirrored requests only, until the candidate's p95 latency
    over them is under maxLatency (True: still warming up, or rolled back for it)."""
    warmup, state = draft.spec.strategy.warmup, draft.s.warmup
    if warmup is None or draft.s.current_step > 0 or draft.s.step_started_at is not None or (
            state is not None and state.passed_at is not None):
        return False
    if state is None:
        state = WarmupStatus(started_at=format_timestamp(draft.now))
        draft.event("WarmupStarted", f"mirroring {warmup.mirror_percent}% of live traffic to {draft.candidate} "
                                     f"until its p95 latency is under {warmup.max_latency}")
    detail = _warmup_detail(warmup.requests, warmup.max_latency, reading)
    read = {"requests": reading.requests, "latency_p95": reading.latency_p95} if reading is not None else {}
    state = state.model_copy(update={**read, "message": detail})
    if reading is not None and reading.requests >= warmup.requests and reading.latency_p95 is not None \
            and reading.latency_p95 <= parse_duration(warmup.max_latency):
        draft.set(warmup=state.model_copy(update={"passed_at": format_timestamp(draft.now)}))
        draft.event("WarmupPassed", f"candidate {draft.candidate} is warm: {detail}")
        return False
    draft.set(warmup=state)
    if (draft.now - parse_timestamp(state.started_at)).total_seconds() >= parse_duration(warmup.timeout):
        _roll_back(draft, "WarmupFailed", f"not warm within {warmup.timeout}: {detail}")
        return True
    draft.route(0, warmup.mirror_percent)
    draft.set(message=f"warming up: {detail}")
    draft.wake(draft.now + WARMUP_RECHECK)
    return True


def _warmup_detail(needed: int, limit: str, reading: WarmupReading | None) -> str:
    if reading is None:
        return "no reading yet"
    if reading.error is not None:
        return f"no reading: {reading.error}"
    if reading.requests < needed:
        return f"{reading.requests:.0f} of {needed} warm-up requests so far"
    if reading.latency_p95 is None:
        return f"no p95 yet over {reading.requests:.0f} requests"
    return f"p95 {reading.latency_p95 * 1000:.0f}ms over {reading.requests:.0f} requests (limit {limit})"


def _hold_for_readiness(draft: _Draft, observations: Observations) -> None:
    """No traffic reaches a candidate that is not fully ready; the step clock restarts later."""
    draft.route(0, 0)
    draft.set(candidate_ready=False, step_started_at=None, step_ends_at=None)
    draft.wake(draft.now + READINESS_RECHECK)
    reason = observations.candidate_unschedulable
    if reason:
        message = f"candidate pods cannot be scheduled: {reason}"
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, True, "Unschedulable", reason)
        if draft.s.message != message:
            draft.event("CandidateUnschedulable", message, warning=True)
    else:
        message = "waiting for all candidate replicas to be ready"
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, False, "Scheduled")
    draft.set(message=message)


def _run_step(draft: _Draft, observations: Observations) -> None:
    spec = draft.spec
    index = draft.s.current_step
    step = spec.strategy.steps[index]
    _route_of_step(draft, index)
    elapsed = (draft.now - draft.step_started).total_seconds()
    duration = spec.step_seconds(index)
    signal = observations.analysis

    if step.pause is not None and duration is None and draft.s.pause_reason is None:
        draft.set(pause_reason=PauseReason.STEP)
    if draft.s.pause_reason:
        reason = draft.s.pause_reason
        draft.set(phase=Phase.PAUSED, message=f"paused ({reason}) at step {index + 1}")
        why = signal.reason if signal is not None and reason in (PauseReason.ANALYSIS, PauseReason.HALTED) else ""
        draft.condition(ConditionType.PAUSED, True, PAUSED_BECAUSE[reason], why)
        if why:
            draft.set(message=f"paused at step {index + 1}: {why}")
        return
    draft.set(phase=Phase.PROGRESSING)
    draft.condition(ConditionType.PAUSED, False, "Running")

    if signal is not None and signal.verdict == AnalysisVerdict.HOLD:
        draft.set(message=f"step {index + 1} held: {signal.reason}")
        return
    if step.ab_test is not None:
        _run_ab_step(draft, elapsed, observations)
        return
    if duration is None or elapsed >= duration:
        _advance(draft, f"{step.kind} ran {elapsed:.0f}s")
        _after_advance(draft, observations)
    else:
        # The deadline lives in status.stepEndsAt: a countdown here would rewrite status every tick.
        draft.set(message=f"step {index + 1}/{len(spec.strategy.steps)}: {step.kind}")
        draft.wake(draft.step_started + timedelta(seconds=duration))


def _run_ab_step(draft: _Draft, elapsed: float, observations: Observations) -> None:
    index = draft.s.current_step
    ab = draft.spec.strategy.steps[index].ab_test
    assert ab is not None
    verdict = observations.analysis.ab_verdict if observations.analysis else None
    long_enough = elapsed >= (parse_duration(ab.min_duration) if ab.min_duration else 0.0)
    maximum = draft.spec.step_seconds(index) or 0.0
    if verdict == Verdict.CANDIDATE_WORSE:
        draft.set(verdict=Verdict.CANDIDATE_WORSE)
        _roll_back(draft, "CandidateWorse", f"A/B test: candidate is worse on {ab.metric}")
    elif verdict in (Verdict.CANDIDATE_BETTER, Verdict.NO_DIFFERENCE) and long_enough:
        draft.set(verdict=verdict)
        _advance(draft, f"A/B verdict {verdict}")
        _after_advance(draft, observations)
    elif elapsed >= maximum:
        if ab.metric is None or ab.on_inconclusive == "promote":
            # Without a metric the step is a timed split, as until analysis lands.
            draft.set(verdict=Verdict.INCONCLUSIVE if ab.metric else draft.s.verdict)
            _advance(draft, f"abTest reached maxDuration {ab.max_duration}")
            _after_advance(draft, observations)
        elif ab.on_inconclusive == "rollback":
            draft.set(verdict=Verdict.INCONCLUSIVE)
            _roll_back(draft, "Inconclusive", f"A/B test inconclusive after {ab.max_duration}")
        else:
            draft.set(verdict=Verdict.INCONCLUSIVE, pause_reason=PauseReason.STEP, phase=Phase.PAUSED,
                      message=f"A/B test inconclusive after {ab.max_duration}; promote or abort")
            draft.condition(ConditionType.PAUSED, True, "Inconclusive", "A/B test inconclusive")
    else:
        started = draft.step_started
        draft.set(message=f"step {index + 1}/{len(draft.spec.strategy.steps)}: abTest")
        draft.wake(started + timedelta(seconds=maximum))
        if ab.min_duration and not long_enough:
            draft.wake(started + timedelta(seconds=parse_duration(ab.min_duration)))


def _after_advance(draft: _Draft, observations: Observations) -> None:
    """Start the next step right away (a step without duration passes at once), or complete."""
    index = draft.s.current_step
    steps = draft.spec.strategy.steps
    if draft.swap and not _candidate_ready(draft, observations):
        draft.resize()
        _hold_for_resize(draft)
        return
    if index >= len(steps):
        _begin_promotion(draft)
        return
    _start_step(draft)
    _run_step(draft, observations)


_IN_FLIGHT = (Stage.RUNNING, Stage.PAUSED, Stage.AT_PAUSE_STEP, Stage.HALTED)
# The manual actions, in one table: (stage, action) -> transition. Any other pair is ignored
# with a Warning Event, so a stray annotation never moves traffic.
ACTION_TABLE: dict[tuple[Stage, ManualAction], Callable[[_Draft], None]] = {
    **{(stage, ManualAction.ABORT): _abort for stage in _IN_FLIGHT},
    **{(stage, ManualAction.PROMOTE): _promote for stage in _IN_FLIGHT},
    **{(stage, ManualAction.PROMOTE_FULL): _promote_full for stage in _IN_FLIGHT},
    (Stage.RUNNING, ManualAction.PAUSE): _pause,
    (Stage.PAUSED, ManualAction.RESUME): _resume,
    (Stage.AT_PAUSE_STEP, ManualAction.RESUME): _resume_past_pause_step,
    (Stage.HALTED, ManualAction.RESUME): _resume_halted,
    (Stage.ROLLED_BACK, ManualAction.RETRY): _retry,
    (Stage.WARM, ManualAction.UNDO): _undo,
}
