"""The rollout state machine, step by step, without a cluster."""

from __future__ import annotations

from typing import Any

from controller.analysis.readings import AnalysisSignal
from controller.api import AnalysisStatus, AnalysisVerdict, ModelRolloutStatus, Phase, Verdict
from controller.engine import DeleteRevision, Observations, SelectServices, SetRoute, reconcile
from tests.unit.engine.world import T0, World, deployed, make_spec

STEPS: list[dict[str, Any]] = [
    {"shadow": {"percent": 100, "duration": "30s"}},
    {"canary": {"weight": 5, "duration": "60s"}},
    {"canary": {"weight": 25, "duration": "60s"}},
    {"pause": {}},
    {"abTest": {"weight": 50, "maxDuration": "120s"}},
]


def started(steps: list[dict[str, Any]] = STEPS, **kw: Any) -> World:
    world = deployed(World(make_spec(steps, **kw)))
    world.new_template("rev2")
    world.step()
    return world


def test_first_template_becomes_stable_without_steps() -> None:
    world = World(make_spec(STEPS))
    world.step()
    assert world.status.phase == Phase.COMPLETED
    assert world.status.stable_revision == "rev1"
    assert world.deployments == {"rev1": 2}
    assert world.route == (0, 0)
    assert "Deployed" in world.reasons()


def test_first_template_waits_for_ready_stable_then_completes() -> None:
    spec = make_spec(STEPS)
    first = reconcile(spec, 1, ModelRolloutStatus(), Observations("rev1", stable_ready=False), T0)
    assert first.status.phase == Phase.PROGRESSING
    second = reconcile(spec, 1, first.status, Observations("rev1", stable_ready=True), T0)
    assert second.status.phase == Phase.COMPLETED
    assert any(c.type == "Available" and c.status == "True" for c in second.status.conditions)


def test_full_rollout_walks_every_step_then_promotes() -> None:
    world = started()
    assert world.status.phase == Phase.PROGRESSING
    assert world.status.candidate_revision == "rev2"
    assert world.route == (0, 100), "shadow mirrors and routes nothing"
    assert world.status.step_label == "1/5"

    world.step(31)
    assert world.route == (5, 0)
    assert world.status.current_step == 1
    world.step(61)
    assert world.route == (25, 0)
    world.step(61)
    assert world.status.phase == Phase.PAUSED
    assert world.route == (25, 0), "a pause holds the previous weight"
    world.step(3600)
    assert world.status.phase == Phase.PAUSED, "a pause without duration waits for a human"

    world.act("promote")
    assert world.route == (50, 0)
    assert world.status.current_step == 4
    world.step(121)
    assert world.status.phase == Phase.COMPLETED
    assert world.status.stable_revision == "rev2"
    assert world.status.previous_stable_revision == "rev1"
    assert world.services == ("rev2", "rev1"), "old model stays warm behind the -candidate Service"
    assert world.route == (0, 0)
    assert world.deployments == {"rev1": 2, "rev2": 2}
    assert world.status.step_label == "5/5"


def test_promotion_moves_traffic_through_states_that_serve_only_the_new_revision() -> None:
    world = started([{"canary": {"weight": 30, "duration": "10s"}}])
    world.history.clear()
    world.step(11)
    moves = [a for a in world.history if isinstance(a, SetRoute | SelectServices)]
    served = []
    services = ("rev1", "rev2")
    for action in moves:
        if isinstance(action, SelectServices):
            services = (action.stable, action.candidate)
            continue
        stable_svc, candidate_svc = services
        served.append({stable_svc} if action.weight == 0 else
                      {candidate_svc} if action.weight == 100 else {stable_svc, candidate_svc})
    assert served[-2:] == [{"rev2"}, {"rev2"}]


def test_no_traffic_until_candidate_is_ready_and_unschedulable_is_surfaced() -> None:
    world = deployed(World(make_spec(STEPS)))
    world.candidate_ready = False
    world.unschedulable = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    world.new_template("rev2")
    world.step()
    world.step(600)
    assert world.route == (0, 0)
    assert world.status.current_step == 0
    condition = next(c for c in world.status.conditions if c.type == "CandidateUnschedulable")
    assert condition.status == "True"
    assert "Insufficient nvidia.com/gpu" in condition.message
    assert world.reasons().count("CandidateUnschedulable") == 1, "one event, not one per reconcile"

    world.candidate_ready, world.unschedulable = True, None
    world.step()
    assert world.route == (0, 100)
    assert next(c for c in world.status.conditions if c.type == "CandidateUnschedulable").status == "False"


def test_abort_is_one_route_write_back_to_stable_and_retry_restarts() -> None:
    world = started()
    world.step(31)
    world.history.clear()
    world.act("abort")
    routes = [a for a in world.history if isinstance(a, SetRoute)]
    assert routes[0] == SetRoute(0, 0)
    assert world.status.phase == Phase.ROLLED_BACK
    assert world.deployments["rev1"] == 2, "stable untouched"
    assert world.deployments["rev2"] == 0
    assert any(c.type == "RolledBack" and c.status == "True" for c in world.status.conditions)

    world.step(3600)
    assert world.status.phase == Phase.ROLLED_BACK, "an aborted template is not rolled out again by itself"
    failed_attempt = world.status.step_started_at
    world.act("retry")
    assert world.status.phase == Phase.PROGRESSING
    assert world.status.current_step == 0
    # The analysis keys its state by the step attempt: a retry does not inherit the failed verdict.
    assert world.status.step_started_at != failed_attempt
    assert world.route == (0, 100)


def test_pause_and_resume_hold_the_current_step() -> None:
    world = started()
    world.step(31)
    world.act("pause")
    assert world.status.phase == Phase.PAUSED
    world.step(600)
    assert world.status.current_step == 1
    assert world.route == (5, 0)
    world.act("resume")
    assert world.status.phase == Phase.PROGRESSING
    assert world.status.current_step == 2, "the step's time had already run out"


def test_promote_full_skips_the_remaining_steps() -> None:
    world = started()
    world.act("promote-full")
    assert world.status.phase == Phase.COMPLETED
    assert world.status.stable_revision == "rev2"


def test_undo_within_the_window_is_first_a_single_route_write() -> None:
    world = started([{"canary": {"weight": 50, "duration": "10s"}}], scaleDownDelaySeconds=600)
    world.step(11)
    assert world.status.phase == Phase.COMPLETED
    world.history.clear()
    world.act("undo")
    assert world.history[0] == SetRoute(100, 0), "the warm old model takes all traffic at once"
    assert world.services == ("rev1", "rev2")
    assert world.route == (0, 0)
    assert world.status.stable_revision == "rev1"
    assert world.status.phase == Phase.ROLLED_BACK


def test_undo_after_the_window_is_refused_and_old_model_is_gone() -> None:
    world = started([{"canary": {"weight": 50, "duration": "10s"}}], scaleDownDelaySeconds=60)
    world.step(11)
    world.step(61)
    assert "rev1" not in world.deployments
    assert world.status.previous_stable_revision is None
    world.act("undo")
    assert "ActionIgnored" in world.reasons()
    assert world.status.stable_revision == "rev2"


def test_template_change_mid_rollout_restarts_from_stable() -> None:
    world = started()
    world.step(31)
    world.step(61)
    assert world.route == (25, 0)
    world.new_template("rev3")
    world.history.clear()
    world.step()
    assert world.history[0] == DeleteRevision("rev2") or SetRoute(0, 0) in world.history
    assert world.status.candidate_revision == "rev3"
    assert world.status.current_step == 0
    assert world.route == (0, 100)
    assert "rev2" not in world.deployments
    assert world.deployments["rev1"] == 2
    assert "RolloutRestarted" in world.reasons()


def test_reverting_the_template_to_stable_cancels_the_candidate() -> None:
    world = started()
    world.step(31)
    world.new_template("rev1")
    world.step()
    assert world.status.candidate_revision is None
    assert world.route == (0, 0)
    assert "rev2" not in world.deployments


def test_analysis_failure_rolls_back() -> None:
    world = started()
    world.step(31)
    world.analysis = AnalysisSignal(AnalysisVerdict.FAIL, "error-rate 0.05 > max 0.001")
    world.step(1)
    assert world.status.phase == Phase.ROLLED_BACK
    assert world.route == (0, 0)
    assert "error-rate" in world.status.message


def test_analysis_hold_never_advances() -> None:
    world = started()
    world.analysis = AnalysisSignal(AnalysisVerdict.HOLD, "prediction PSI 0.4 > 0.2")
    world.step(3600)
    assert world.status.current_step == 0
    assert "PSI" in world.status.message


def test_analysis_error_pauses_by_default_and_never_promotes() -> None:
    world = started([{"canary": {"weight": 10, "duration": "10s"}}])
    world.analysis = AnalysisSignal(AnalysisVerdict.ERROR, "prometheus unreachable")
    world.step(3600)
    assert world.status.phase == Phase.PAUSED
    assert world.status.stable_revision == "rev1"


def test_analysis_error_pause_resumes_when_measurements_return() -> None:
    world = started([{"canary": {"weight": 10, "duration": "60s"}}])
    world.analysis = AnalysisSignal(AnalysisVerdict.ERROR, "prometheus unreachable")
    world.step(5)
    assert world.status.phase == Phase.PAUSED
    assert "prometheus unreachable" in world.status.message
    world.analysis = AnalysisSignal(AnalysisVerdict.PASS)
    world.step(5)
    assert world.status.phase == Phase.PROGRESSING
    assert "AnalysisRecovered" in world.reasons()


def test_halt_waits_for_a_human() -> None:
    world = started([{"canary": {"weight": 10, "duration": "10s"}}])
    world.analysis = AnalysisSignal(AnalysisVerdict.HALT, "sample ratio mismatch: 70/30 observed for 90/10")
    world.step(60)
    assert world.status.phase == Phase.PAUSED
    paused = next(c for c in world.status.conditions if c.type == "Paused")
    assert paused.reason == "AnalysisHalted" and "sample ratio mismatch" in paused.message
    world.analysis = AnalysisSignal(AnalysisVerdict.PASS)
    world.step(60)
    assert world.status.phase == Phase.PAUSED, "a halt is not lifted by itself"
    world.act("promote")
    assert world.status.phase == Phase.COMPLETED


def test_ab_verdicts() -> None:
    ab: list[dict[str, Any]] = [
        {"abTest": {"weight": 50, "maxDuration": "1h", "metric": "conversion", "onInconclusive": "rollback"}}
    ]
    better = started(ab)
    better.analysis = AnalysisSignal(AnalysisVerdict.PASS, ab_verdict=Verdict.CANDIDATE_BETTER)
    better.step(10)
    assert better.status.phase == Phase.COMPLETED
    assert better.status.verdict == "CandidateBetter"

    worse = started(ab)
    worse.analysis = AnalysisSignal(AnalysisVerdict.PASS, ab_verdict=Verdict.CANDIDATE_WORSE)
    worse.step(10)
    assert worse.status.phase == Phase.ROLLED_BACK

    unsure = started(ab)
    unsure.analysis = AnalysisSignal(AnalysisVerdict.PASS, ab_verdict=Verdict.INCONCLUSIVE)
    unsure.step(1800)
    assert unsure.status.phase == Phase.PROGRESSING
    unsure.step(1801)
    assert unsure.status.phase == Phase.ROLLED_BACK
    assert unsure.status.verdict == "Inconclusive"


def test_replicas_routing_cannot_keep_the_old_model_warm() -> None:
    world = started([{"canary": {"weight": 50, "duration": "10s"}}], routing="replicas")
    world.step(11)
    assert world.status.phase == Phase.COMPLETED
    assert "rev1" not in world.deployments


def test_unknown_action_is_reported_not_applied() -> None:
    world = deployed(World(make_spec(STEPS)))
    world.act("abort")
    assert "ActionIgnored" in world.reasons()
    assert world.status.phase == Phase.COMPLETED


def test_replicas_routing_sizes_the_candidate_by_weight_in_the_engine() -> None:
    world = started([{"canary": {"weight": 50, "duration": "10s"}}, {"canary": {"weight": 75, "duration": "1h"}}],
                    routing="replicas")
    assert world.deployments["rev2"] == 2, "50% beside 2 stable replicas is 2 candidate replicas"
    world.step(11)
    assert world.deployments["rev2"] == 6, "75% beside 2 is 6"
    assert world.deployments["rev1"] == 2, "the stable is never scaled down before promotion"
    assert not any(isinstance(action, SetRoute) for action in world.history), "no route without a mesh"
    world.act("abort")
    assert world.deployments["rev2"] == 0


def test_resuming_a_halted_step_restarts_the_step_and_its_evidence() -> None:
    world = started([{"abTest": {"weight": 50, "maxDuration": "1h", "metric": "conversion"}}])
    world.analysis = AnalysisSignal(AnalysisVerdict.HALT, "sample ratio mismatch")
    world.step(5)
    assert world.status.phase == Phase.PAUSED
    assert world.status.pause_reason == "halted"
    first_start = world.status.step_started_at
    world.analysis = AnalysisSignal(AnalysisVerdict.PASS)
    world.step(60)
    assert world.status.phase == Phase.PAUSED, "a halt waits for a human, even when the signal clears"
    world.act("resume")
    assert "HaltResumed" in world.reasons()
    assert world.status.phase == Phase.PROGRESSING
    assert world.status.step_started_at != first_start, "the step's evidence starts again"


def test_every_action_outside_the_table_is_ignored_with_a_warning() -> None:
    world = started(STEPS)
    for action in ("retry", "undo", "resume"):
        world.act(action)
        assert world.reasons()[-1] == "ActionIgnored"
    assert world.status.phase == Phase.PROGRESSING


def test_failures_no_measurement_can_see_are_a_standing_condition() -> None:
    """KServe's server counts no failed requests: without a query guardrail that does, say so."""
    def world(guardrails: list[dict[str, Any]]) -> World:
        spec = make_spec(STEPS[:2])
        analysis = {"prometheus": {"address": "http://prometheus.test:9090"}, "profile": "kserve",
                    "guardrails": guardrails}
        return deployed(World(spec.model_validate({**spec.model_dump(by_alias=True, exclude_none=True),
                                                   "analysis": analysis})))

    blind = world([{"name": "p99", "template": "latencyP99", "ignoreBelow": 0.5}])
    unwatched = next(c for c in blind.status.conditions if c.type == "ErrorsUnwatched")
    assert unwatched.status == "True" and "kserve counts no failed requests" in unwatched.message
    blind.step(10)
    assert blind.reasons().count("ErrorsUnwatched") == 1, "one Event, then the standing condition"
    watched = world([{"name": "5xx", "query": "sum(rate(envoy_5xx{version='{{version}}'}[1m]))", "max": 0.01,
                      "countsErrors": True}])
    assert not any(c.type == "ErrorsUnwatched" for c in watched.status.conditions)


def test_a_pause_after_the_last_step_holds_the_promotion_until_resumed() -> None:
    """Regression (found by the property test): promote past the last step, pause, then the candidate
    becomes ready. The engine asked for an immediate reconcile forever instead of holding."""
    world = World(make_spec([{"pause": {"duration": "57s"}}]))
    world.candidate_ready = False
    deployed(world)
    world.new_template("rev2")
    world.step()
    world.act("promote")
    world.act("pause")
    world.candidate_ready = True
    transition = world.step()
    assert world.status.phase == Phase.PAUSED and transition.wake_at is None
    assert world.route != (100, 0), "no promotion while paused"
    world.act("resume")
    world.step()
    assert world.status.phase == Phase.COMPLETED and world.status.stable_revision == "rev2"


def test_counts_older_than_two_looks_are_a_standing_condition() -> None:
    """Prometheus scrapes every 60 s and the analysis looks every 10 s: most looks count nothing new. Say so."""
    spec = make_spec(STEPS[:2])
    watched = {"prometheus": {"address": "http://prometheus.test:9090"}, "interval": "10s",
               "guardrails": [{"name": "errors", "template": "errorRate", "ignoreBelow": 0.01}]}
    world = deployed(World(spec.model_validate({**spec.model_dump(by_alias=True, exclude_none=True),
                                                "analysis": watched})))
    analysis = AnalysisStatus(step=0, step_started_at="2026-12-06T00:00:00Z", last_run="2026-12-06T00:00:10Z",
                              verdict=AnalysisVerdict.HOLD, oldest_scrape_seconds=45.0)
    world.status = world.status.model_copy(update={"analysis": analysis})
    world.step(1)
    slow = next(c for c in world.status.conditions if c.type == "ScrapesSlow")
    assert slow.status == "True" and "45 s old" in slow.message and "every 10s or less" in slow.message
    world.step(1)
    assert world.reasons().count("ScrapesSlow") == 1, "one Event, then the standing condition"
    world.status = world.status.model_copy(update={"analysis": analysis.model_copy(
        update={"oldest_scrape_seconds": 12.0})})
    world.step(1)
    assert next(c for c in world.status.conditions if c.type == "ScrapesSlow").status == "False"
