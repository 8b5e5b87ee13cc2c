"""The rollout's states and every transition between them: one table, which the engine runs and a
reader prints (`modelrollout states`, and the diagram in the README).

The state lives in status.state (`RolloutState`, from `draft.state_of`). The engine changes it only
through `fire(draft, event)`: the (state, event) pair is looked up here, its handler runs, and the
state it arrives in must be one the row names, so a move the table does not hold fails loudly
instead of happening. A manual action the table does not hold in the current state is ignored with
a Warning Event, so a stray annotation never moves traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from controller.api import Action as ManualAction
from controller.api import EventReason, RolloutState
from controller.engine import transitions as t
from controller.engine.draft import Draft, state_of


class Event(StrEnum):
    # A manual action (the annotation's verb).
    PROMOTE = ManualAction.PROMOTE.value
    PROMOTE_FULL = ManualAction.PROMOTE_FULL.value
    ABORT = ManualAction.ABORT.value
    PAUSE = ManualAction.PAUSE.value
    RESUME = ManualAction.RESUME.value
    RETRY = ManualAction.RETRY.value
    UNDO = ManualAction.UNDO.value
    # The template.
    FIRST_REVISION = "FirstRevision"
    NEW_TEMPLATE = "NewTemplate"
    TEMPLATE_REVERTED = "TemplateReverted"
    # What the analysis, the gates and the clock found.
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_ERROR = "AnalysisError"  # measurements fail past errorLimit, analysis.onError: rollback
    MEASUREMENTS_FAILING = "MeasurementsFailing"  # the same, analysis.onError: pause
    ANALYSIS_RECOVERED = "AnalysisRecovered"
    ANALYSIS_HALTED = "AnalysisHalted"
    CAPACITY_TIMEOUT = "CapacityTimeout"
    WARMUP_FAILED = "WarmupFailed"
    PAUSE_STEP_REACHED = "PauseStepReached"
    STEP_DONE = "StepDone"
    AB_WORSE = "CandidateWorse"
    AB_DECIDED = "ABDecided"  # CandidateBetter or NoDifference, after minDuration
    AB_TIMED_OUT = "ABTimedOut"  # maxDuration without a verdict: as abTest.onInconclusive says
    PROMOTED = "Promoted"
    KEEP_WARM_OVER = "KeepWarmOver"
    # The route's owner.
    ROUTE_TAKEN_BACK = "RouteTakenBack"
    ROUTE_HANDED_BACK = "RouteHandedBack"
    # The route's gateway.
    GATEWAY_REJECTED = "GatewayRejected"
    GATEWAY_ACCEPTED = "GatewayAccepted"


@dataclass(frozen=True)
class Row:
    source: RolloutState
    event: Event
    # The states the handler may arrive in (more than one where the spec chooses).
    targets: tuple[RolloutState, ...]
    handler: Callable[[Draft, str], None]


S = RolloutState
IN_FLIGHT = (S.RUNNING, S.PAUSED, S.AT_PAUSE_STEP, S.HALTED)
HAS_CANDIDATE = (*IN_FLIGHT, S.ROLLED_BACK)


def _rows(sources: tuple[RolloutState, ...], event: Event, targets: tuple[RolloutState, ...],
          handler: Callable[[Draft, str], None]) -> list[Row]:
    return [Row(source, event, targets, handler) for source in sources]


def _rolls_back(reason: str) -> Callable[[Draft, str], None]:
    def handler(draft: Draft, why: str) -> None:
        t.roll_back(draft, reason, why)
    return handler


TRANSITIONS: tuple[Row, ...] = (
    *_rows((S.NEW, S.DEPLOYING), Event.FIRST_REVISION, (S.DEPLOYING, S.STABLE), t.initial_deploy),
    *_rows((S.DEPLOYING, S.STABLE, S.WARM, *HAS_CANDIDATE), Event.NEW_TEMPLATE, (S.RUNNING,), t.start_rollout),
    *_rows(HAS_CANDIDATE, Event.TEMPLATE_REVERTED, (S.STABLE,), t.cancel_candidate),
    # The manual actions.
    *_rows(IN_FLIGHT, Event.ABORT, (S.ROLLED_BACK,), t.abort),
    *_rows(IN_FLIGHT, Event.PROMOTE, (S.RUNNING,), t.promote),
    *_rows(IN_FLIGHT, Event.PROMOTE_FULL, (S.RUNNING,), t.promote_full),
    Row(S.RUNNING, Event.PAUSE, (S.PAUSED,), t.pause),
    Row(S.PAUSED, Event.RESUME, (S.RUNNING,), t.resume),
    Row(S.AT_PAUSE_STEP, Event.RESUME, (S.RUNNING,), t.resume_past_pause_step),
    Row(S.HALTED, Event.RESUME, (S.RUNNING,), t.resume_halted),
    Row(S.ROLLED_BACK, Event.RETRY, (S.RUNNING,), t.retry),
    Row(S.WARM, Event.UNDO, (S.ROLLED_BACK,), t.undo),
    # The analysis.
    *_rows(IN_FLIGHT, Event.ANALYSIS_FAILED, (S.ROLLED_BACK,), _rolls_back("AnalysisFailed")),
    *_rows(IN_FLIGHT, Event.ANALYSIS_ERROR, (S.ROLLED_BACK,), _rolls_back("AnalysisError")),
    Row(S.RUNNING, Event.MEASUREMENTS_FAILING, (S.PAUSED,), t.pause_for_analysis),
    Row(S.PAUSED, Event.ANALYSIS_RECOVERED, (S.RUNNING,), t.recover),
    Row(S.RUNNING, Event.ANALYSIS_HALTED, (S.HALTED,), t.halt),
    # What a candidate waits for before its first step.
    *_rows(IN_FLIGHT, Event.CAPACITY_TIMEOUT, (S.ROLLED_BACK,), _rolls_back("CapacityTimeout")),
    *_rows(IN_FLIGHT, Event.WARMUP_FAILED, (S.ROLLED_BACK,), _rolls_back("WarmupFailed")),
    # The steps.
    Row(S.RUNNING, Event.PAUSE_STEP_REACHED, (S.AT_PAUSE_STEP,), t.stop_at_pause_step),
    Row(S.RUNNING, Event.STEP_DONE, (S.RUNNING,), t.advance),
    Row(S.RUNNING, Event.AB_WORSE, (S.ROLLED_BACK,), t.candidate_worse),
    Row(S.RUNNING, Event.AB_DECIDED, (S.RUNNING,), t.ab_decided),
    Row(S.RUNNING, Event.AB_TIMED_OUT, (S.RUNNING, S.ROLLED_BACK, S.AT_PAUSE_STEP), t.ab_timed_out),
    Row(S.RUNNING, Event.PROMOTED, (S.WARM, S.STABLE), t.complete),
    Row(S.WARM, Event.KEEP_WARM_OVER, (S.STABLE,), t.scale_down_warm),
    # The route's owner. A rollout already paused stays in its pause.
    Row(S.RUNNING, Event.ROUTE_TAKEN_BACK, (S.PAUSED,), t.lose_route),
    *[Row(source, Event.ROUTE_TAKEN_BACK, (source,), t.lose_route) for source in IN_FLIGHT if source != S.RUNNING],
    Row(S.PAUSED, Event.ROUTE_HANDED_BACK, (S.RUNNING,), t.regain_route),
    # The route's gateway: a rollout already stopped for another reason stays stopped.
    Row(S.RUNNING, Event.GATEWAY_REJECTED, (S.PAUSED,), t.lose_gateway),
    Row(S.PAUSED, Event.GATEWAY_ACCEPTED, (S.RUNNING,), t.regain_route),
)
_BY_PAIR = {(row.source, row.event): row for row in TRANSITIONS}
assert len(_BY_PAIR) == len(TRANSITIONS), "one row per (state, event)"

# How an ignored action names the state it met.
_IN_WORDS = {S.NEW: "new", S.DEPLOYING: "deploying its first revision", S.STABLE: "settled", S.RUNNING: "running",
             S.PAUSED: "paused", S.AT_PAUSE_STEP: "at a pause step", S.HALTED: "halted", S.ROLLED_BACK: "rolled back",
             S.WARM: "completed, old model warm"}


def fire(draft: Draft, event: Event, why: str = "") -> None:
    source = state_of(draft.s)
    row = _BY_PAIR.get((source, event))
    if row is None:
        raise AssertionError(f"the state table has no {event.value} in {source.value}")
    row.handler(draft, why)
    arrived = state_of(draft.s)
    if arrived not in row.targets:
        raise AssertionError(f"{event.value} in {source.value} arrived in {arrived.value}, which its row does not name")


def take_action(draft: Draft, action: ManualAction) -> None:
    source, event = state_of(draft.s), Event(action.value)
    if (source, event) not in _BY_PAIR:
        draft.event(EventReason.ACTION_IGNORED,
                    f"{action.value!r} does not apply while the rollout is {_IN_WORDS[source]}", warning=True)
        return
    fire(draft, event)


def table() -> list[tuple[str, str, str]]:
    """(state, event, next states) for every row, in the table's order."""
    return [(row.source.value, row.event.value, " | ".join(target.value for target in row.targets))
            for row in TRANSITIONS]


def diagram() -> str:
    """The table as a Mermaid state diagram: one arrow per (state, next state), labelled with its events."""
    edges: dict[tuple[str, str], list[str]] = {}
    for row in TRANSITIONS:
        for target in row.targets:
            edges.setdefault((row.source.value, target.value), []).append(row.event.value)
    lines = ["stateDiagram-v2", f"    [*] --> {S.NEW.value}"]
    lines += [f"    {source} --> {target}: {', '.join(events)}" for (source, target), events in edges.items()]
    return "\n".join(lines) + "\n"
