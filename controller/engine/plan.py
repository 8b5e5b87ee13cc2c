"""What is due to be measured at this reconcile, decided before anything is read: the readings plan.

The engine plans (pure), one port measures everything planned (`controller.measure`), and the
engine decides on what came back (`decide`). Each reading has its own pace: an analysis look
every analysis.interval of a running step, the warm-up's latency at every reconcile of a warm-up,
the serving cost once a minute, the candidate's GPUs once, before it is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from controller import api
from controller.analysis.readings import AnalysisSignal, Look, Reading, compared_step, needs
from controller.durations import parse_duration
from controller.engine.observations import Observations, requested_verb
from controller.engine.routes import candidate_replicas
from controller.timestamps import format_timestamp, parse_timestamp

# One look's queries share this much of its interval, and never more than the cap: a hung
# Prometheus delays nothing else for longer.
DEADLINE_SHARE = 0.8
DEADLINE_CAP_SECONDS = 15.0
COST_INTERVAL = timedelta(seconds=60)
WARMUP_WINDOW = "1m"


@dataclass(frozen=True)
class AnalysisPlan:
    look: Look
    readings: frozenset[Reading]
    # Whether the look needs a Prometheus at all (a step with neither guardrails nor an abTest
    # shows a comparison only when there is one to ask).
    requires_prometheus: bool
    deadline_seconds: float


@dataclass(frozen=True)
class WarmupPlan:
    """The candidate's requests and p95 latency over its warm-up so far, at most `seconds` back."""

    revision: str
    seconds: int


@dataclass(frozen=True)
class Plan:
    analysis: AnalysisPlan | None = None
    # With no look due: the last look's verdict (or a hold), which stands until the next.
    held: AnalysisSignal | None = None
    next_analysis_at: datetime | None = None
    warmup: WarmupPlan | None = None
    # Revisions whose request counters the serving cost reads now.
    cost: tuple[str, ...] = ()
    # Pods of the new candidate to find GPUs for, before it is created.
    capacity: int | None = None


def plan(spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus, observations: Observations,
         now: datetime) -> Plan:
    revision = observations.template_revision
    # A manual action goes first and never waits on a query: the last verdict stands for this pass.
    may_query = status.pending_action is None and (
        observations.requested_action is None or requested_verb(observations.requested_action) is None)
    look, held, next_at = _analysis(spec, status, revision, now, may_query)
    return Plan(analysis=look, held=held, next_analysis_at=next_at,
                warmup=_warmup(spec, status, revision, now) if may_query else None,
                cost=_cost(spec, status, revision, now), capacity=_capacity(spec, status, observations))


def current_analysis(status: api.ModelRolloutStatus) -> api.AnalysisStatus | None:
    """status.analysis when it belongs to the current attempt at the current step, else None."""
    analysis = status.analysis
    if analysis is None or analysis.step != status.current_step or analysis.step_started_at != status.step_started_at:
        return None
    return analysis


def _analysis(spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus, revision: str, now: datetime,
              may_query: bool) -> tuple[AnalysisPlan | None, AnalysisSignal | None, datetime | None]:
    """A look when one is due and may run; else the signal that stands, and when the next look is due."""
    analysis = spec.analysis
    step = status.current_step
    if not (analysis is not None
            and status.candidate_revision == revision and status.stable_revision is not None
            and status.phase in (api.Phase.PROGRESSING, api.Phase.PAUSED)
            and status.step_started_at is not None and status.candidate_ready
            and step < len(spec.strategy.steps)):
        return None, None, None
    interval = parse_duration(analysis.interval)
    # Only this attempt at this step counts: a retry restarts the step and its evidence.
    previous = current_analysis(status)
    if previous is not None:
        due_at = parse_timestamp(previous.last_run) + timedelta(seconds=interval)
        if now < due_at or not may_query:
            ab = previous.ab_test.verdict if previous.ab_test and spec.strategy.steps[step].ab_test else None
            return None, AnalysisSignal(previous.verdict, previous.reason, ab), due_at
    if not may_query:
        # No verdict yet for this step: hold, and run it right after the action.
        return None, AnalysisSignal(api.AnalysisVerdict.HOLD, "the step's first analysis is pending"), now
    started = parse_timestamp(status.step_started_at)
    look = Look(
        stable=status.stable_revision, candidate=revision, step_index=step, step_kind=spec.strategy.steps[step].kind,
        step_started_at=status.step_started_at, step_elapsed_seconds=(now - started).total_seconds(),
        weight=status.canary_weight, now=format_timestamp(now), interval_seconds=interval,
        step_seconds=spec.step_seconds(step),
        since_last_seconds=(now - parse_timestamp(previous.last_run)).total_seconds() if previous else interval,
        expected_share=_expected_share(spec, step, status.canary_weight), compared_step=compared_step(spec, step),
    )
    current = spec.strategy.steps[step]
    requires = bool(analysis.guardrails or current.ab_test or look.compared_step is not None)
    deadline = min(DEADLINE_CAP_SECONDS, max(1.0, interval * DEADLINE_SHARE))
    return AnalysisPlan(look, needs(spec, look, previous), requires, deadline), None, now + timedelta(seconds=interval)


def _expected_share(spec: api.ModelRolloutSpec, step: int, weight: int) -> float | None:
    """Where requests should land, for the sample-ratio check of an abTest step: the route weight.

    Not with a header cohort (it adds candidate traffic on purpose) nor with replicas routing
    (its split is the replica ratio, an approximation of the weight)."""
    ab = spec.strategy.steps[step].ab_test
    if ab is None or ab.header_route is not None or spec.traffic_routing.replicas is not None:
        return None
    return weight / 100 if 0 < weight < 100 else None


def _warmup(spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus, revision: str, now: datetime
            ) -> WarmupPlan | None:
    """The candidate's warm-up latency, read over the analysis window cut at the warm-up's start:
    what it answered before, if anything, is not a warm-up request."""
    state = status.warmup
    if not (spec.strategy.warmup is not None and state is not None and state.passed_at is None
            and status.candidate_revision == revision
            and status.phase in (api.Phase.PROGRESSING, api.Phase.PAUSED)):
        return None
    window = min(parse_duration(spec.analysis.window if spec.analysis else WARMUP_WINDOW),
                 (now - parse_timestamp(state.started_at)).total_seconds())
    return WarmupPlan(revision, int(window) if window >= 1 else 0)


def _cost(spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus, revision: str, now: datetime
          ) -> tuple[str, ...]:
    """Every revision that may serve after this pass, once COST_INTERVAL has passed since the last reading."""
    if spec.cost is None:
        return ()
    previous = status.cost
    if previous is not None and now < parse_timestamp(previous.measured_at) + COST_INTERVAL:
        return ()
    return tuple(dict.fromkeys(r for r in (status.stable_revision, status.candidate_revision, revision) if r))


def _capacity(spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus, observations: Observations) -> int | None:
    """Before the candidate exists: how many of its pods must find their GPUs free."""
    revision = observations.template_revision
    # Under swap the candidate's GPUs come from the stable: there is nothing to wait for.
    if revision == (status.stable_revision or revision) or observations.candidate_exists \
            or spec.strategy.capacity.policy == "swap":
        return None
    return candidate_replicas(spec.replicas, 0) if spec.traffic_routing.replicas is not None else spec.replicas
