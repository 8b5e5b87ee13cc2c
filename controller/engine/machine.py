"""The rollout state machine: one reconcile, (spec, status, observations, now) -> Transition.

`reconcile` is level-triggered: every call returns the whole desired traffic state (Services and
route) for the status it produces, so re-running it after a crash converges the world instead of
repeating a step. The states and their transitions are one table (`states.TRANSITIONS`); the
handlers are `transitions`, a candidate's steps are `steps`, and what it waits for is `gates`.
"""

from __future__ import annotations

from datetime import datetime

from controller.api import (
    ConditionType,
    EventReason,
    ModelRolloutSpec,
    ModelRolloutStatus,
    PauseReason,
    Phase,
    RolloutState,
)
from controller.engine.actions import Action, EmitEvent, ScaleRevision
from controller.engine.conditions import find_condition, set_condition
from controller.engine.draft import MAX_MESSAGE, Draft, Transition, state_of
from controller.engine.observations import Observations, RouteRefusal, RouteServing
from controller.engine.states import IN_FLIGHT, Event, fire, take_action
from controller.engine.steps import progress
from controller.timestamps import format_timestamp, parse_timestamp


def reconcile(
    spec: ModelRolloutSpec,
    generation: int,
    status: ModelRolloutStatus,
    observations: Observations,
    now: datetime,
) -> Transition:
    """One reconcile: the actions to take and the status to record after taking them."""
    draft = Draft(spec, status, now, observations)
    if observations.route_refusal is not None:
        _route_refused(draft, observations.route_refusal)
        return draft.finish(generation)
    _route_handed_back(draft)
    if observations.route_serving is not None:
        _route_served(draft, observations.route_serving)
    revision = observations.template_revision
    first_deploy_waiting = (
        status.candidate_revision is None and status.phase == Phase.PROGRESSING
        and revision == status.stable_revision
    )
    if status.stable_revision is None or first_deploy_waiting:
        fire(draft, Event.FIRST_REVISION, revision)
        return draft.finish(generation)

    action = status.pending_action
    draft.set(pending_action=None)
    if action:
        draft.set(last_action=action)

    candidate = status.candidate_revision
    if revision == status.stable_revision and candidate is not None:
        fire(draft, Event.TEMPLATE_REVERTED, "the template matches the stable revision again")
    elif revision not in (status.stable_revision, candidate):
        fire(draft, Event.NEW_TEMPLATE, revision)
    elif action:
        take_action(draft, action)

    if draft.s.candidate_revision and draft.s.phase in (Phase.PROGRESSING, Phase.PAUSED):
        progress(draft, observations)
    elif draft.s.candidate_revision is None:
        steady_state(draft)
    else:
        rolled_back_state(draft)
    return draft.finish(generation)


def failed(status: ModelRolloutStatus, reason: EventReason, detail: str, now: datetime) -> Transition:
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
    event = EmitEvent("Warning", EventReason.INVALID_SPEC, message)
    return Transition([event] if status.message != new_status.message else [], new_status)


def _route_managed(draft: Draft) -> tuple[str, str] | None:
    """The RouteManaged condition's (status, reason), if any."""
    found = find_condition(draft.s.conditions, ConditionType.ROUTE_MANAGED.value)
    return (found.status, found.reason) if found is not None else None


def _route_refused(draft: Draft, refusal: RouteRefusal) -> None:
    """Not ours to write: nothing at all is done (no route, no workload), and a rollout in flight
    pauses until the rule is handed back. Pending manual actions wait too."""
    if _route_managed(draft) != ("False", refusal.access.value):
        draft.event(EventReason(refusal.access.value), refusal.message, warning=True)
    draft.condition(ConditionType.ROUTE_MANAGED, False, refusal.access.value, refusal.message)
    draft.set(message=refusal.message)
    if state_of(draft.s) in IN_FLIGHT:
        fire(draft, Event.ROUTE_TAKEN_BACK, refusal.message)


def _route_handed_back(draft: Draft) -> None:
    """The rule is ours again: a pause that was the route's ends, and its step starts over, since
    the traffic it measured was not the step's."""
    if _route_managed(draft) not in (None, ("True", "HandedBack")):
        draft.condition(ConditionType.ROUTE_MANAGED, True, "HandedBack", "the route's rule is the rollout's to manage")
        draft.event(EventReason.ROUTE_HANDED_BACK, "the route's rule is the rollout's to manage again")
    if draft.s.pause_reason == PauseReason.ROUTE:
        fire(draft, Event.ROUTE_HANDED_BACK)


def _route_served(draft: Draft, serving: RouteServing) -> None:
    """What the gateways say of the route, as the RouteAccepted condition. A rejection pauses a running
    rollout (its step's weights are not what anyone serves) until the route is accepted again, and
    the step then starts over; silence from the gateways is said, and holds nothing."""
    before = find_condition(draft.s.conditions, ConditionType.ROUTE_ACCEPTED.value)
    draft.condition(ConditionType.ROUTE_ACCEPTED, serving.status, serving.reason.value, serving.message)
    if serving.status == "False" and (before is None or before.status != "False"):
        draft.event(EventReason.ROUTE_NOT_ACCEPTED, serving.message, warning=True)
    elif serving.status == "True" and before is not None and before.status == "False":
        draft.event(EventReason.ROUTE_ACCEPTED, serving.message)
    state = state_of(draft.s)
    if serving.status == "False" and state == RolloutState.RUNNING:
        fire(draft, Event.GATEWAY_REJECTED, serving.message)
    elif serving.status != "False" and draft.s.pause_reason == PauseReason.GATEWAY:
        fire(draft, Event.GATEWAY_ACCEPTED)


def steady_state(draft: Draft) -> None:
    stable = draft.stable
    previous = draft.s.previous_stable_revision
    due = draft.s.scale_down_at
    if previous and due and draft.now >= parse_timestamp(due):
        fire(draft, Event.KEEP_WARM_OVER)
        previous = None
    elif previous and due:
        draft.wake(parse_timestamp(due))
    # Under swap the warm old stable holds the GPUs of min_available pods until it is removed.
    held = draft.spec.strategy.capacity.min_available if draft.swap and previous else 0
    draft.actions.append(ScaleRevision(stable, draft.spec.replicas - held))
    draft.select(stable, previous or stable)
    draft.route(0, 0)


def rolled_back_state(draft: Draft) -> None:
    stable = draft.stable
    draft.select(stable, draft.candidate)
    draft.route(0, 0)
    # The candidate stops before the stable grows back: under swap its GPUs are the stable's.
    draft.actions.append(ScaleRevision(draft.candidate, 0))
    draft.actions.append(ScaleRevision(stable, draft.spec.replicas))
