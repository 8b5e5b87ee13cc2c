"""A candidate in flight, one pass: capacity, readiness, the analysis' signal, the warm-up, then its steps.

Each step's route, clock and end (a duration, an A/B verdict, a pause); a step that passes at once
hands over to the next within the pass, in a bounded loop. What changes the rollout's state goes
through `states.fire`.
"""

from __future__ import annotations

from datetime import timedelta

from controller.analysis.readings import AnalysisSignal
from controller.api import AnalysisVerdict, ConditionType, EventReason, PauseReason, Phase, Verdict
from controller.durations import parse_duration
from controller.engine.actions import EnsureRevision, ScaleRevision
from controller.engine.draft import PAUSED_BECAUSE, READINESS_RECHECK, Draft
from controller.engine.gates import await_capacity, warming_up
from controller.engine.observations import Observations
from controller.engine.routes import candidate_replicas, route_for_step
from controller.engine.states import Event, fire
from controller.timestamps import format_timestamp


def progress(draft: Draft, observations: Observations) -> None:
    spec = draft.spec
    stable = draft.stable
    candidate = draft.candidate
    past_steps = draft.s.current_step >= len(spec.strategy.steps)
    recorded_full = (draft.status.canary_weight, draft.status.mirror_percent) == (100, 0)
    if past_steps and recorded_full and draft.status.current_step >= len(spec.strategy.steps) \
            and _candidate_ready(draft, observations) and draft.s.pause_reason is None:
        fire(draft, Event.PROMOTED)
        return
    if await_capacity(draft, observations):
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


def _candidate_ready(draft: Draft, observations: Observations) -> bool:
    """All replicas Ready; without a mesh one Ready pod, since every running pod takes traffic; under swap
    the current step's size (the Deployment may not show this reconcile's resize yet). Never while its
    Service has no ready endpoint: a gateway would answer the step's share itself, with 503s."""
    if observations.candidate_endpoints == 0:
        return False
    if draft.replicas_mode:
        return observations.candidate_any_ready
    if draft.swap:
        return observations.candidate_ready_replicas >= draft.swap_sizes()[1]
    return observations.candidate_ready


def _run_ready(draft: Draft, observations: Observations) -> None:
    """A Ready candidate within its steps: the analysis' verdict, the warm-up, then the step."""
    spec = draft.spec
    if not draft.s.candidate_ready:
        draft.set(candidate_ready=True)
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, False, "Scheduled")
        size = draft.swap_sizes()[1] if draft.swap else spec.replicas
        draft.event(EventReason.CANDIDATE_READY, f"all {size} candidate replicas are ready")

    if _apply_signal(draft, observations.analysis):
        return
    if observations.next_analysis_at is not None:
        draft.wake(observations.next_analysis_at, routine=True)
    if warming_up(draft, observations.warmup):
        return
    if draft.s.step_started_at is None:
        _start_step(draft)
    _run_steps(draft, observations)


def _size_revisions(draft: Draft) -> None:
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


def _apply_signal(draft: Draft, signal: AnalysisSignal | None) -> bool:
    """Act on the analysis verdict; True when it rolled the rollout back."""
    spec = draft.spec
    if signal is not None and signal.verdict == AnalysisVerdict.FAIL:
        fire(draft, Event.ANALYSIS_FAILED, signal.reason)
        return True
    if signal is not None and signal.verdict == AnalysisVerdict.ERROR:
        if spec.analysis is not None and spec.analysis.on_error == "rollback":
            fire(draft, Event.ANALYSIS_ERROR, signal.reason)
            return True
        if draft.s.pause_reason is None:
            fire(draft, Event.MEASUREMENTS_FAILING, signal.reason)
    elif draft.s.pause_reason == PauseReason.ANALYSIS:
        fire(draft, Event.ANALYSIS_RECOVERED)
    if signal is not None and signal.verdict == AnalysisVerdict.HALT and draft.s.pause_reason is None:
        fire(draft, Event.ANALYSIS_HALTED, signal.reason)
    return False


def _start_step(draft: Draft) -> None:
    index = draft.s.current_step
    steps = draft.spec.strategy.steps
    duration = draft.spec.step_seconds(index)
    ends = format_timestamp(draft.now + timedelta(seconds=duration)) if duration is not None else None
    draft.set(step_started_at=format_timestamp(draft.now), step_ends_at=ends)
    draft.event(EventReason.STEP_STARTED, f"step {index + 1}/{len(steps)}: {steps[index].kind}")
    if draft.spec.analysis is not None:
        # The step's first look runs at once, not an interval on; an analysis tick all the same: 8,600 canaries
        # starting together once kept template changes and step ends waiting behind their first looks.
        draft.wake(draft.now, routine=True)


def _resizing(draft: Draft, observations: Observations) -> bool:
    """Under swap, between steps: the next step's pods are on their way while the last step's are Ready.

    The last step's route then stays, and the next step starts (its clock, its route) once its pods are Ready."""
    index = draft.s.current_step
    if not draft.swap or index == 0 or draft.s.step_started_at is not None or not draft.s.candidate_ready:
        return False
    return observations.candidate_ready_replicas >= draft.swap_sizes(index - 1)[1]


def _hold_for_resize(draft: Draft) -> None:
    index = draft.s.current_step
    steps = draft.spec.strategy.steps
    route_of_step(draft, index - 1)
    stable, candidate = draft.swap_sizes()
    what = "the promotion" if index >= len(steps) else f"step {index + 1}/{len(steps)}"
    draft.set(message=f"making room for {what}: stable to {stable}, candidate to {candidate} replicas")
    draft.wake(draft.now + READINESS_RECHECK)


def route_of_step(draft: Draft, index: int) -> None:
    step = draft.spec.strategy.steps[index]
    weight, mirror = route_for_step(draft.spec.strategy.steps, index)
    cohort = step.ab_test.header_route if step.ab_test is not None else None
    compare = step.shadow is not None and step.shadow.compare is not None
    draft.route(weight, mirror, (cohort.name, cohort.value) if cohort else None, compare)


def _hold_for_readiness(draft: Draft, observations: Observations) -> None:
    """No traffic reaches a candidate that is not fully ready; the step clock restarts later."""
    draft.route(0, 0)
    draft.set(candidate_ready=False, step_started_at=None, step_ends_at=None)
    draft.wake(draft.now + READINESS_RECHECK)
    reason = observations.candidate_unschedulable
    if reason:
        message = f"candidate pods cannot be scheduled: {reason}"
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, True, "Unschedulable", reason)
        if draft.s.message != message:
            draft.event(EventReason.CANDIDATE_UNSCHEDULABLE, message, warning=True)
    elif observations.candidate_endpoints == 0 and observations.candidate_any_ready:
        message = "candidate pods are Ready, but the candidate Service has no ready endpoint"
        if draft.s.message != message:
            draft.event(EventReason.CANDIDATE_UNREACHABLE, message, warning=True)
    else:
        message = "waiting for all candidate replicas to be ready"
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, False, "Scheduled")
    draft.set(message=message)


def _run_steps(draft: Draft, observations: Observations) -> None:
    """The current step, and each next one that starts in this same pass (a step without a duration
    passes at once). Bounded: every round but the last completes a step."""
    for _ in range(len(draft.spec.strategy.steps) + 1):
        if not _run_step(draft, observations) or not _next_step(draft, observations):
            return


def _run_step(draft: Draft, observations: Observations) -> bool:
    """Route the current step and see it through this pass; True when it completed."""
    spec = draft.spec
    index = draft.s.current_step
    step = spec.strategy.steps[index]
    route_of_step(draft, index)
    elapsed = (draft.now - draft.step_started).total_seconds()
    duration = spec.step_seconds(index)
    signal = observations.analysis

    if step.pause is not None and duration is None and draft.s.pause_reason is None:
        fire(draft, Event.PAUSE_STEP_REACHED)
    if draft.s.pause_reason:
        reason = draft.s.pause_reason
        draft.set(phase=Phase.PAUSED, message=f"paused ({reason}) at step {index + 1}")
        why = signal.reason if signal is not None and reason in (PauseReason.ANALYSIS, PauseReason.HALTED) else ""
        draft.condition(ConditionType.PAUSED, True, PAUSED_BECAUSE[reason], why)
        if why:
            draft.set(message=f"paused at step {index + 1}: {why}")
        return False
    draft.set(phase=Phase.PROGRESSING)
    draft.condition(ConditionType.PAUSED, False, "Running")

    if signal is not None and signal.verdict == AnalysisVerdict.HOLD:
        draft.set(message=f"step {index + 1} held: {signal.reason}")
        return False
    if step.ab_test is not None:
        return _run_ab_step(draft, elapsed, observations)
    if duration is None or elapsed >= duration:
        fire(draft, Event.STEP_DONE, f"{step.kind} ran {elapsed:.0f}s")
        return True
    compare = step.shadow.compare if step.shadow is not None else None
    if compare is not None and compare.ends_early and signal is not None and signal.step_passed \
            and signal.verdict == AnalysisVerdict.PASS:
        fire(draft, Event.STEP_DONE, f"{step.kind} ran {elapsed:.0f}s: {signal.reason}")
        return True
    # The deadline lives in status.stepEndsAt: a countdown here would rewrite status every tick.
    draft.set(message=f"step {index + 1}/{len(spec.strategy.steps)}: {step.kind}")
    draft.wake(draft.step_started + timedelta(seconds=duration))
    return False


def _run_ab_step(draft: Draft, elapsed: float, observations: Observations) -> bool:
    index = draft.s.current_step
    ab = draft.spec.strategy.steps[index].ab_test
    assert ab is not None
    verdict = observations.analysis.ab_verdict if observations.analysis else None
    long_enough = elapsed >= (parse_duration(ab.min_duration) if ab.min_duration else 0.0)
    maximum = draft.spec.step_seconds(index) or 0.0
    if verdict == Verdict.CANDIDATE_WORSE:
        fire(draft, Event.AB_WORSE, f"A/B test: candidate is worse on {ab.metric}")
    elif verdict in (Verdict.CANDIDATE_BETTER, Verdict.NO_DIFFERENCE) and long_enough:
        fire(draft, Event.AB_DECIDED, str(verdict))
    elif elapsed >= maximum:
        fire(draft, Event.AB_TIMED_OUT)
    else:
        started = draft.step_started
        draft.set(message=f"step {index + 1}/{len(draft.spec.strategy.steps)}: abTest")
        draft.wake(started + timedelta(seconds=maximum))
        if ab.min_duration and not long_enough:
            draft.wake(started + timedelta(seconds=parse_duration(ab.min_duration)))
    return draft.s.current_step > index


def _next_step(draft: Draft, observations: Observations) -> bool:
    """After a step completed: start the next one now (True), or make room for it, or begin the promotion."""
    index = draft.s.current_step
    steps = draft.spec.strategy.steps
    if draft.swap and not _candidate_ready(draft, observations):
        draft.resize()
        _hold_for_resize(draft)
        return False
    if index >= len(steps):
        _begin_promotion(draft)
        return False
    _start_step(draft)
    return True


def _hold_promotion(draft: Draft) -> None:
    """Paused past the last step, before the promotion's route write: traffic stays as recorded until a resume.

    Regression: this went on to the promotion's write with a wake-up at once, and, paused, never completed
    it, so the rollout asked for a reconcile in a loop (found by the property test)."""
    reason = draft.s.pause_reason
    assert reason is not None
    draft.route(draft.s.canary_weight, draft.s.mirror_percent)
    draft.set(phase=Phase.PAUSED, message=f"paused ({reason}) before the promotion")
    draft.condition(ConditionType.PAUSED, True, PAUSED_BECAUSE[reason])


def _begin_promotion(draft: Draft) -> None:
    """All traffic to the candidate, recorded before the Services swap in the next reconcile."""
    draft.route(100, 0)
    draft.set(step_ends_at=None, message=f"promoting revision {draft.s.candidate_revision}")
    draft.wake(draft.now)
