"""One decision: the readings folded in, the state machine run, its status completed.

The only writer of status.analysis, status.decisions and status.cost: the judge turns an analysis
look's measurements into a signal and the step's new tests, the machine acts on the signal, and
the cost is priced from its counters. What `decide` returns is the status the reconciler stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from controller import api
from controller.analysis.budget import step_budget
from controller.analysis.readings import AnalysisSignal, Measurements, WarmupReading
from controller.api import EventReason
from controller.cost import version_cost
from controller.engine.actions import EmitEvent
from controller.engine.draft import Transition
from controller.engine.machine import reconcile
from controller.engine.observations import Observations, requested_verb
from controller.engine.plan import COST_INTERVAL, Plan, current_analysis
from controller.timestamps import format_timestamp, parse_timestamp


@dataclass(frozen=True)
class AnalysisReadings:
    # None when nothing was measured: see `error`.
    measured: Measurements | None = None
    # Why the look could not measure (no Prometheus, credentials refused); None with nothing
    # measured: the step needs no Prometheus and there is none to ask.
    error: str | None = None
    took_ms: float = 0.0


@dataclass(frozen=True)
class CostReadings:
    # Each planned revision's request counter total (None: no series), and the GPUs serving it.
    requests: dict[str, float | None] = field(default_factory=dict)
    gpus: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    # A manual action arrived mid-reading: measure right after it.
    interrupted: bool = False


@dataclass(frozen=True)
class Readings:
    """What the measuring port read for a Plan."""

    analysis: AnalysisReadings | None = None
    warmup: WarmupReading | None = None
    cost: CostReadings | None = None
    capacity_shortfall: str | None = None


@dataclass(frozen=True)
class _Run:
    signal: AnalysisSignal | None = None
    state: api.AnalysisStatus | None = None
    decisions: list[api.Decision] = field(default_factory=list)
    next_at: datetime | None = None


def decide(spec: api.ModelRolloutSpec, generation: int, status: api.ModelRolloutStatus, observations: Observations,
           plan: Plan, readings: Readings, now: datetime) -> Transition:
    requested = observations.requested_action
    # One action at a time: a newer one waits on the object until the pending one is applied.
    takes = requested is not None and status.pending_action is None
    status, told = _take(status, requested) if requested is not None and takes else (status, [])
    run = _judge(spec, status, plan, readings)
    seen = replace(observations, analysis=run.signal, warmup=readings.warmup, next_analysis_at=run.next_at,
                   capacity_shortfall=readings.capacity_shortfall)
    transition = reconcile(spec, generation, status, seen, now)
    transition = _with_analysis(spec, transition, status, run)
    transition = _with_cost(spec, transition, plan, readings.cost, now)
    # An action that arrived while another was pending is taken right after this one.
    pending = requested is not None and not takes
    return replace(transition, actions=[*told, *transition.actions], wake_at=now if pending else transition.wake_at,
                   routine=transition.routine and not pending, takes_request=takes)


def _take(status: api.ModelRolloutStatus, requested: str) -> tuple[api.ModelRolloutStatus, list[EmitEvent]]:
    """The annotation's action becomes status.pendingAction; an unknown verb is told, and dropped."""
    verb = requested_verb(requested)
    if verb is not None:
        return status.model_copy(update={"pending_action": verb}), []
    why = f"{requested!r} is not one of {', '.join(api.ACTIONS)}"
    return status, [EmitEvent("Warning", EventReason.UNKNOWN_ACTION, why)]


def _judge(spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus, plan: Plan, readings: Readings) -> _Run:
    """The analysis signal of this pass: a fresh look's verdict, or the one that stands."""
    if plan.analysis is None:
        return _Run(plan.held, next_at=plan.next_analysis_at)
    got = readings.analysis
    if got is None or (got.measured is None and got.error is None):
        return _Run()  # Nothing to measure at this step, and nothing to measure it with.
    if got.measured is None:
        return _Run(AnalysisSignal(api.AnalysisVerdict.ERROR, got.error or ""), next_at=plan.next_analysis_at)
    # numpy and scipy cost tens of MB: loaded by the first look that runs, never by an operator
    # whose rollouts have none.
    from controller.analysis.judge import judge

    assert spec.analysis is not None
    look = plan.analysis.look
    result = judge(spec, step_budget(spec.analysis, look), look, current_analysis(status), got.measured,
                   status.comparison_record)
    # How long the queries and judgements took: the analysis share of a rollback's latency.
    state = result.state.model_copy(update={"duration_ms": got.took_ms})
    return _Run(result.signal, state, result.decisions, plan.next_analysis_at)


def _takes_feedback(spec: api.ModelRolloutSpec, step: int) -> bool:
    shadow = spec.strategy.steps[step].shadow if step < len(spec.strategy.steps) else None
    return shadow is not None and shadow.compare is not None and shadow.compare.takes_feedback


def _with_analysis(spec: api.ModelRolloutSpec, transition: Transition, status: api.ModelRolloutStatus,
                   run: _Run) -> Transition:
    """Store the look's state and decisions.

    A new candidate starts a new record of decisions. A finished rollout keeps its deciding look.
    A running one drops the state of an earlier step attempt (a new candidate, a retry, a resumed
    halt) until its own first look, so that nothing reads the last attempt's verdict as this one's."""
    new = transition.status
    same_rollout = new.candidate_revision in (None, status.candidate_revision)
    decisions = new.decisions if same_rollout else []
    if not same_rollout and new.comparison_record is not None:
        new = new.model_copy(update={"comparison_record": None})
        transition = replace(transition, status=new)
    if run.state is not None and same_rollout:
        decisions = [*decisions, *run.decisions][-api.MAX_DECISIONS:]
        update: dict[str, object] = {"analysis": run.state, "decisions": decisions}
        compared = run.state.comparison
        if compared is not None and compared.step is not None and _takes_feedback(spec, compared.step):
            update["comparison_record"] = api.ComparisonRecord(comparison=compared, counters={
                key: value for key, value in run.state.counters.items() if key.startswith("compare")})
        return replace(transition, status=new.model_copy(update=update))
    stale = new.analysis is not None and new.phase in (api.Phase.PROGRESSING, api.Phase.PAUSED) and (
        current_analysis(new) is None or not same_rollout)
    if stale or decisions != new.decisions:
        update = {"analysis": None if stale else new.analysis, "decisions": decisions}
        return replace(transition, status=new.model_copy(update=update))
    return transition


def _with_cost(spec: api.ModelRolloutSpec, transition: Transition, plan: Plan, reading: CostReadings | None,
               now: datetime) -> Transition:
    """status.cost of the versions the transition leaves serving, and a wake-up for the next reading.

    A failed reading keeps the last figures and says why; cost never moves a rollout."""
    status = transition.status
    previous = status.cost
    cost: api.CostStatus | None
    if spec.cost is None or status.stable_revision is None:
        cost, next_at = None, None
    elif not plan.cost or reading is None:
        assert previous is not None, "the first reading is always due"
        cost, next_at = previous, parse_timestamp(previous.measured_at) + COST_INTERVAL
    elif reading.interrupted:
        cost, next_at = previous, now
    elif reading.error is not None:
        # The last figures stay; their counters go, so that no rate spans the failed reading.
        cost, next_at = api.CostStatus(measured_at=format_timestamp(now), reason=reading.error, **{
            role: entry.model_copy(update={"requests": None})
            for role, entry in (("stable", previous.stable if previous else None),
                                ("candidate", previous.candidate if previous else None)) if entry is not None
        }), now + COST_INTERVAL
    else:
        seconds = (now - parse_timestamp(previous.measured_at)).total_seconds() if previous else 0.0
        roles = {"stable": status.stable_revision, "candidate": status.candidate_revision}
        cost = api.CostStatus(measured_at=format_timestamp(now), **{
            role: version_cost(revision, reading.gpus.get(revision, 0), reading.requests.get(revision),
                               _entry(previous, revision), seconds, spec.cost.gpu_hourly_cost, spec.cost.utilization)
            for role, revision in roles.items() if revision is not None
        })
        next_at = now + COST_INTERVAL
    wake_at = min(filter(None, (transition.wake_at, next_at)), default=None)
    if cost == status.cost and wake_at == transition.wake_at:
        return transition
    # The cost's own tick is routine too.
    return replace(transition, status=status.model_copy(update={"cost": cost}), wake_at=wake_at,
                   routine=transition.routine or wake_at != transition.wake_at)


def _entry(previous: api.CostStatus | None, revision: str) -> api.VersionCost | None:
    """The last reading of `revision`, whichever role it had (a promoted candidate is the stable now)."""
    if previous is None:
        return None
    return next((v for v in (previous.stable, previous.candidate) if v is not None and v.revision == revision), None)
