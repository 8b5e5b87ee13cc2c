"""What happens to a rollout at each transition of its state machine: the handlers `states` names.

Each is a whole move of traffic and status: the route writes, the Services, the Deployments'
sizes, the conditions and the Event, in an order in which every intermediate state serves a single,
known revision.
"""

from __future__ import annotations

from datetime import timedelta

from controller.api import ConditionType, EventReason, PauseReason, Phase, Verdict
from controller.engine.actions import DeleteRevision, EnsureRevision, ScaleRevision
from controller.engine.draft import PAUSED_BECAUSE, READINESS_RECHECK, Draft
from controller.timestamps import format_timestamp


def initial_deploy(draft: Draft, revision: str) -> None:
    """No stable yet: the first template becomes the stable directly, as Argo does."""
    observations = draft.seen
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
        draft.event(EventReason.DEPLOYED, f"first revision {revision} is ready and serves all traffic")
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
            draft.event(EventReason.UNSCHEDULABLE, message, warning=True)
    else:
        message = f"waiting for revision {revision} to become ready"
        draft.condition(ConditionType.AVAILABLE, False, "StableNotReady", "waiting for replicas")
        draft.condition(ConditionType.CANDIDATE_UNSCHEDULABLE, False, "Scheduled")
    draft.set(message=message)


def start_rollout(draft: Draft, revision: str) -> None:
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
        draft.event(EventReason.ROLLOUT_RESTARTED,
                    f"template changed during the rollout; restarting from stable {stable} with {revision}")
    else:
        draft.event(EventReason.ROLLOUT_STARTED, f"rolling out {revision} beside stable {stable}")


def cancel_candidate(draft: Draft, why: str) -> None:
    candidate = draft.candidate
    stable = draft.stable
    draft.route(0, 0)
    draft.select(stable, stable)
    draft.actions.append(DeleteRevision(candidate))
    draft.set(candidate_revision=None, phase=Phase.COMPLETED, pause_reason=None, step_started_at=None,
              step_ends_at=None, message=f"{why}; candidate {candidate} removed")
    draft.condition(ConditionType.PROGRESSING, False, "CandidateRemoved", why)
    draft.condition(ConditionType.PAUSED, False, "CandidateRemoved")
    draft.event(EventReason.CANDIDATE_REMOVED, f"{why}; candidate {candidate} removed")


def abort(draft: Draft, _: str = "") -> None:
    roll_back(draft, "Aborted", "aborted by the user")


def pause(draft: Draft, _: str = "") -> None:
    draft.set(pause_reason=PauseReason.USER)
    draft.event(EventReason.PAUSED, "paused by the user")


def resume(draft: Draft, _: str = "") -> None:
    draft.set(pause_reason=None)
    draft.event(EventReason.RESUMED, "resumed by the user")


def resume_past_pause_step(draft: Draft, _: str = "") -> None:
    advance(draft, "resumed by the user")
    resume(draft)


def resume_halted(draft: Draft, _: str = "") -> None:
    """A human looked at the broken experiment and let it go on: its evidence starts again."""
    draft.set(pause_reason=None, step_started_at=None, step_ends_at=None)
    draft.event(EventReason.HALT_RESUMED,
                "resumed by the user after an analysis halt; the step and its evidence start again")


def promote(draft: Draft, _: str = "") -> None:
    draft.set(pause_reason=None)
    advance(draft, "promoted by the user")


def promote_full(draft: Draft, _: str = "") -> None:
    draft.set(pause_reason=None, current_step=len(draft.spec.strategy.steps), step_started_at=None, step_ends_at=None)
    draft.event(EventReason.PROMOTED_FULL, "promoted by the user past all remaining steps")


def retry(draft: Draft, _: str = "") -> None:
    draft.set(phase=Phase.PROGRESSING, current_step=0, step_started_at=None, step_ends_at=None, pause_reason=None,
              verdict=None, candidate_ready=False, warmup=None, message="retrying the rollout from the first step")
    draft.condition(ConditionType.ROLLED_BACK, False, "Retried")
    draft.condition(ConditionType.PROGRESSING, True, "Retried")
    draft.event(EventReason.RETRIED, f"retrying candidate {draft.candidate} from the first step")


def roll_back(draft: Draft, reason: str, why: str) -> None:
    """One route write back to 100% stable and no mirror; the candidate then stops."""
    draft.route(0, 0)
    draft.actions.append(ScaleRevision(draft.candidate, 0))
    draft.actions.append(ScaleRevision(draft.stable, draft.spec.replicas))  # Under swap it gave up pods.
    draft.set(phase=Phase.ROLLED_BACK, pause_reason=None, step_started_at=None, step_ends_at=None,
              candidate_ready=False, message=f"rolled back: {why}")
    draft.condition(ConditionType.ROLLED_BACK, True, reason, why)
    draft.condition(ConditionType.PROGRESSING, False, reason, why)
    draft.condition(ConditionType.PAUSED, False, reason)
    draft.event(EventReason.ROLLED_BACK, f"{why}; all traffic is back on stable {draft.s.stable_revision}",
                warning=True)


def undo(draft: Draft, _: str = "") -> None:
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
    draft.event(EventReason.UNDONE, f"undo: {previous} serves all traffic again; {undone} stopped", warning=True)


def advance(draft: Draft, why: str) -> None:
    step = draft.s.current_step
    draft.set(current_step=step + 1, step_started_at=None, step_ends_at=None)
    draft.event(EventReason.STEP_COMPLETED, f"step {step + 1}/{len(draft.spec.strategy.steps)} completed: {why}")


def complete(draft: Draft, _: str = "") -> None:
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
    draft.event(EventReason.PROMOTED, f"revision {new} is the stable; {old} " +
                ("stays warm for undo" if keep_warm else "is removed"))


def pause_for_analysis(draft: Draft, why: str) -> None:
    """Measurements fail past errorLimit (analysis.onError: pause): the analysis pauses, and resumes."""
    draft.set(pause_reason=PauseReason.ANALYSIS)
    draft.event(EventReason.ANALYSIS_ERROR, f"paused: {why}", warning=True)


def recover(draft: Draft, _: str = "") -> None:
    """Measurements are back: the pause was the analysis's, so is the resume."""
    draft.set(pause_reason=None)
    draft.event(EventReason.ANALYSIS_RECOVERED, "measurements are back; resuming")


def halt(draft: Draft, why: str) -> None:
    draft.set(pause_reason=PauseReason.HALTED)
    draft.event(EventReason.ANALYSIS_HALTED, f"halted: {why}", warning=True)


def stop_at_pause_step(draft: Draft, _: str = "") -> None:
    draft.set(pause_reason=PauseReason.STEP)


def candidate_worse(draft: Draft, why: str) -> None:
    draft.set(verdict=Verdict.CANDIDATE_WORSE)
    roll_back(draft, "CandidateWorse", why)


def ab_decided(draft: Draft, verdict: str) -> None:
    draft.set(verdict=Verdict(verdict))
    advance(draft, f"A/B verdict {verdict}")


def ab_timed_out(draft: Draft, _: str = "") -> None:
    """maxDuration without a verdict: abTest.onInconclusive says whether to go on, roll back or pause."""
    ab = draft.spec.strategy.steps[draft.s.current_step].ab_test
    assert ab is not None
    if ab.metric is None or ab.on_inconclusive == "promote":
        # Without a metric the step is a timed split, as until analysis lands.
        draft.set(verdict=Verdict.INCONCLUSIVE if ab.metric else draft.s.verdict)
        advance(draft, f"abTest reached maxDuration {ab.max_duration}")
    elif ab.on_inconclusive == "rollback":
        draft.set(verdict=Verdict.INCONCLUSIVE)
        roll_back(draft, "Inconclusive", f"A/B test inconclusive after {ab.max_duration}")
    else:
        draft.set(verdict=Verdict.INCONCLUSIVE, pause_reason=PauseReason.STEP, phase=Phase.PAUSED,
                  message=f"A/B test inconclusive after {ab.max_duration}; promote or abort")
        draft.condition(ConditionType.PAUSED, True, "Inconclusive", "A/B test inconclusive")


def scale_down_warm(draft: Draft, _: str = "") -> None:
    """The keep-warm window is over: the old model goes."""
    previous = draft.previous
    draft.select(draft.stable, draft.stable)
    draft.actions.append(DeleteRevision(previous))
    draft.set(previous_stable_revision=None, scale_down_at=None)
    draft.event(EventReason.SCALED_DOWN, f"keep-warm window over: old revision {previous} removed")


def lose_route(draft: Draft, why: str) -> None:
    """The route's owner took the rule back: a rollout in flight pauses (unless already paused)."""
    if draft.s.pause_reason is None:
        draft.set(pause_reason=PauseReason.ROUTE)
    draft.set(phase=Phase.PAUSED)
    draft.condition(ConditionType.PAUSED, True, PAUSED_BECAUSE[PauseReason.ROUTE], why)


def lose_gateway(draft: Draft, why: str) -> None:
    """The route's gateway rejects it: the step's weights are not served, so the rollout pauses."""
    draft.set(pause_reason=PauseReason.GATEWAY, phase=Phase.PAUSED)
    draft.condition(ConditionType.PAUSED, True, PAUSED_BECAUSE[PauseReason.GATEWAY], why)


def regain_route(draft: Draft, _: str = "") -> None:
    """The rule is handed back: the step starts over, as the traffic it measured was not the step's."""
    draft.set(pause_reason=None, step_started_at=None, step_ends_at=None)
