"""A shadow step's comparison, look by look through `judge`: the comparator's totals in, breaches,
holds, an early pass and what a person sees out. Totals are what Prometheus returns for the
comparator's series: `<metric>|<cell>|<side>|<reason>|<le>|<field>` keyed."""

from __future__ import annotations

import json
from typing import Any

from controller.analysis.budget import step_budget
from controller.analysis.judge import judge
from controller.analysis.readings import Comparisons, Look, Measurements, MetricError, compared_step, needs
from controller.api import AnalysisStatus, AnalysisVerdict, ComparisonRecord, ModelRolloutSpec
from tests.unit.engine.world import make_spec

REQUESTS = "modelrollout_compare_requests_total"


def spec(*later: dict[str, Any], **compare: Any) -> ModelRolloutSpec:
    base = make_spec([{"pause": {}}]).model_dump(by_alias=True, exclude_none=True)
    base["strategy"]["steps"] = [{"shadow": {"percent": 50, "duration": "1h",
                                             "compare": {"format": "v2", **compare}}}, *later]
    # A profile without a prediction histogram: the comparison is all the step reads.
    base["analysis"] = {"prometheus": {"address": "http://prometheus.test:9090"}, "interval": "10s",
                        "profile": "mlserver"}
    return ModelRolloutSpec.model_validate(base)


class Comparator:
    """The comparator's counters as Prometheus returns them; `gone` has no series, `down` no answer."""

    def __init__(self) -> None:
        self.process = 1_765_100_000_000  # its start, in milliseconds
        self.totals: dict[str, float] = {}
        self.gone = self.down = False

    def add(self, part: str, n: float) -> None:
        part = f"{part}|{self.process}"
        self.totals[part] = self.totals.get(part, 0.0) + n

    def serve(self, n: int, differs: float = 0.0, noise: float = 0.0, twice: float = 0.2) -> None:
        """n compared requests: the candidate differs on a share `differs`, the stable from itself on `noise`."""
        for cell, share in (("once/same", (1 - twice) * (1 - differs)), ("once/differs", (1 - twice) * differs),
                            ("twice/same/same", twice * (1 - differs) * (1 - noise)),
                            ("twice/same/differs", twice * (1 - differs) * noise),
                            ("twice/differs/same", twice * differs * (1 - noise)),
                            ("twice/differs/differs", twice * differs * noise)):
            self.add(f"{REQUESTS}|{cell}||||", round(n * share))
        if differs:
            self.add("modelrollout_compare_differences_total|||||label", round(n * differs))

    def restart(self, new_process: bool = True) -> None:
        """A new process (its own start), or the same one's counters at zero (which only an exporter
        that names no process could look like)."""
        self.process += 60_000 if new_process else 0
        self.totals = {}

    def answer(self) -> Measurements:
        if self.down:
            return Measurements({Comparisons(): MetricError("prometheus query failed: connection refused")})
        return Measurements({Comparisons(): {} if self.gone else dict(self.totals)})


class Step:
    def __init__(self, shown: ModelRolloutSpec, comparator: Comparator, index: int = 0,
                 record: ComparisonRecord | None = None) -> None:
        self.spec, self.comparator, self.index, self.record = shown, comparator, index, record
        self.state: AnalysisStatus | None = None
        self.elapsed = 10.0

    def look(self) -> Any:
        look = Look(stable="s1", candidate="c1", step_index=self.index, step_kind=self.spec.strategy.steps[
                        self.index].kind, step_started_at="2026-12-07T12:00:00Z", step_elapsed_seconds=self.elapsed,
                    weight=0, now="2026-12-07T12:05:00Z", interval_seconds=10,
                    step_seconds=3600, compared_step=compared_step(self.spec, self.index))
        assert self.spec.analysis is not None
        assert needs(self.spec, look, self.state) == frozenset({Comparisons()})
        result = judge(self.spec, step_budget(self.spec.analysis, look), look, self.state, self.comparator.answer(),
                       self.record)
        self.state = AnalysisStatus.model_validate(json.loads(json.dumps(
            result.state.model_dump(mode="json", by_alias=True), allow_nan=False)))
        self.elapsed += 10
        return result


def test_identical_answers_pass_with_both_rates_and_their_confidence_sequences() -> None:
    comparator = Comparator()
    step = Step(spec(), comparator)
    assert step.look().signal.verdict == AnalysisVerdict.HOLD, "the first look counts from itself"
    for _ in range(10):
        comparator.serve(100, noise=0.05)
        result = step.look()
        assert result.signal.verdict == AnalysisVerdict.PASS, result.signal.reason
    shown = result.state.comparison
    assert shown.pairs == 1000 and shown.twice == 200 and shown.candidate_rate == 0.0
    assert shown.stable_rate == 0.05 and shown.stable_interval[0] < 0.05 < shown.stable_interval[1]
    assert not result.signal.step_passed, "passWhen duration: the step runs its duration"


def test_a_candidate_that_differs_more_than_the_stable_holds_for_a_human_naming_the_field() -> None:
    comparator = Comparator()
    step = Step(spec(), comparator)
    step.look()
    for _ in range(30):
        comparator.serve(100, differs=0.15, noise=0.02)
        result = step.look()
        if result.decisions:
            break
    assert result.signal.verdict == AnalysisVerdict.HOLD and "label (" in result.signal.reason
    assert [d.verdict for d in result.decisions] == ["breach: hold"]
    comparator.serve(100)
    later = step.look()
    assert later.signal.verdict == AnalysisVerdict.HOLD and not later.decisions, "the breach stands, told once"


FEEDBACK = {"requestKey": "x-request-id", "feedback": {"tokenSecretRef": {"name": "feedback"}}}
LABELS: dict[str, Any] = {}


def test_labels_score_both_models_a_less_accurate_candidate_holds_naming_both_accuracies() -> None:
    comparator = Comparator()
    step = Step(spec(labels=LABELS, **FEEDBACK), comparator)
    step.look()
    for _ in range(60):
        comparator.serve(100)  # the two answer alike: the disagreement test stays quiet
        for name, n in (("both-right", 85), ("stable-only", 6), ("candidate-only", 1), ("both-wrong", 8)):
            comparator.add(f"modelrollout_compare_labelled_total|{name}||||", n)
        comparator.add("modelrollout_compare_feedback_total|||stored||", 100)
        result = step.look()
        if result.decisions:
            break
    shown = result.state.comparison.labels
    assert [d.verdict for d in result.decisions] == ["breach: hold"] and "maxDrop 0.01" in result.signal.reason
    assert shown.stable_accuracy == 0.91 and shown.candidate_accuracy == 0.86, shown
    assert shown.candidate_interval[0] < 0.86 < shown.candidate_interval[1]
    assert shown.stable_only == 6 * shown.labelled / 100 and shown.feedback["stored"] == shown.labelled
    assert result.state.comparison.breached == ["labels"]


def test_equally_accurate_models_pass_the_labels_test() -> None:
    comparator = Comparator()
    step = Step(spec(labels=LABELS, **FEEDBACK), comparator)
    step.look()
    for _ in range(30):
        comparator.serve(100)
        for name, n in (("both-right", 85), ("stable-only", 3), ("candidate-only", 3), ("both-wrong", 9)):
            comparator.add(f"modelrollout_compare_labelled_total|{name}||||", n)
        result = step.look()
        assert result.signal.verdict == AnalysisVerdict.PASS, result.signal.reason
    assert result.state.comparison.evidence["labelsNoWorse"] > 0


def test_a_rollback_breach_fails_the_step() -> None:
    comparator = Comparator()
    step = Step(spec(disagreement={"maxExcess": 0.01, "onBreach": "rollback"}), comparator)
    step.look()
    for _ in range(30):
        comparator.serve(100, differs=0.3)
        result = step.look()
        if result.signal.verdict != AnalysisVerdict.PASS:
            break
    assert result.signal.verdict == AnalysisVerdict.FAIL, result.signal.reason


def test_no_worse_ends_the_step_early() -> None:
    comparator = Comparator()
    step = Step(spec(passWhen="noWorse"), comparator)
    step.look()
    for _ in range(60):
        comparator.serve(100)
        result = step.look()
        if result.signal.step_passed:
            break
    assert result.signal.verdict == AnalysisVerdict.PASS and result.state.comparison.passed
    assert [d.verdict for d in result.decisions] == ["NoWorse"] and result.state.comparison.pairs < 2000


def test_a_restarted_comparator_counts_from_zero_and_loses_nothing() -> None:
    comparator = Comparator()
    step = Step(spec(), comparator)
    step.look()
    comparator.serve(100)
    step.look()
    comparator.restart()
    comparator.serve(40)
    assert step.look().state.comparison.pairs == 140


def test_a_comparator_that_crashed_unseen_and_counted_past_its_old_totals_is_still_a_restart() -> None:
    """Down for a while (its series gone), restarted, and back with more than it had: a new process,
    all new; the same process's counters at zero could only be told apart where they fell."""
    for new_process, pairs in ((True, 250), (False, 150)):
        comparator = Comparator()
        step = Step(spec(), comparator)
        step.look()
        comparator.serve(100)
        step.look()
        comparator.gone = True
        assert "comparator's counts are missing" in step.look().signal.reason
        comparator.gone = False
        comparator.restart(new_process)
        comparator.serve(150)
        assert step.look().state.comparison.pairs == pairs, new_process


def test_two_comparators_at_once_add_up_and_a_scrape_that_misses_one_counts_nothing_twice() -> None:
    comparator = Comparator()
    step = Step(spec(), comparator)
    step.look()
    comparator.serve(100)
    old = dict(comparator.totals)
    comparator.process += 60_000  # the Deployment's new pod, beside the old one
    comparator.serve(30)
    assert step.look().state.comparison.pairs == 130
    missed = {part: value for part, value in comparator.totals.items() if part not in old}
    comparator.totals = missed  # the old pod's scrape failed
    comparator.serve(10)
    assert step.look().state.comparison.pairs == 140
    comparator.totals.update(old)  # and came back, unchanged
    comparator.serve(10)
    assert step.look().state.comparison.pairs == 150


def test_what_cannot_be_compared_holds_with_its_reason_never_passes() -> None:
    comparator = Comparator()
    step = Step(spec(), comparator)
    step.look()
    comparator.add("modelrollout_compare_failures_total||candidate|timeout||", 12)
    result = step.look()
    assert result.signal.verdict == AnalysisVerdict.HOLD and "candidate/timeout 12" in result.signal.reason

    comparator = Comparator()
    step = Step(spec(format="json", paths=["$.label"]), comparator)
    step.look()
    comparator.serve(0)
    comparator.add("modelrollout_compare_failures_total||stable|missing-path||", 25)
    comparator.add("modelrollout_compare_failures_total||candidate|missing-path||", 25)
    blocked = step.look()
    assert "compare.paths $.label select nothing in 50 answers" in blocked.signal.reason
    assert blocked.state.comparison.blocked == ("compare.paths $.label select nothing in 50 answers: no request could "
                                                "be compared"), "and condition ComparisonBlocked says so"

    comparator = Comparator()
    step = Step(spec(), comparator)
    step.look()
    assert "not in Prometheus" in step.look().signal.reason, "never scraped: said, and an error past errorLimit"
    comparator.serve(0)
    assert "no request compared yet" in step.look().signal.reason
    comparator.serve(10)
    step.look()
    comparator.gone = True
    assert "counts are missing" in step.look().signal.reason
    comparator.down = True
    assert "connection refused" in step.look().signal.reason


def test_a_candidate_slower_on_the_same_requests_is_rolled_back() -> None:
    comparator = Comparator()
    step = Step(spec(pairedLatency={"relativeToStable": 1.2}), comparator)
    step.look()
    for _ in range(10):
        comparator.serve(20)
        comparator.add("modelrollout_compare_slower_total|slower||||", 15)
        comparator.add("modelrollout_compare_slower_total|within||||", 5)
        result = step.look()
        if result.signal.verdict == AnalysisVerdict.FAIL:
            break
    assert result.signal.verdict == AnalysisVerdict.FAIL and "1.2x the stable's time" in result.signal.reason


JUDGE = {"url": "http://judge.models.svc:8000", "model": "judge-7b"}


def judging(comparator: Comparator, stable: int, candidate: int, tie: int, first: float = 0.5) -> None:
    """One look's judged pairs by the model preferred, and every ask's position (a share `first` chose A)."""
    for cell, n in (("stable", stable), ("candidate", candidate), ("tie", tie)):
        comparator.add(f"modelrollout_compare_judged_total|{cell}||||", n)
    decided = stable + candidate
    comparator.add("modelrollout_compare_judge_positions_total|first||||", round(decided * first))
    comparator.add("modelrollout_compare_judge_positions_total|second||||", decided - round(decided * first))
    comparator.add("modelrollout_compare_judge_positions_total|tie||||", tie)


def test_a_judge_that_prefers_the_stable_holds_the_candidate_naming_its_preferences_and_bias() -> None:
    comparator = Comparator()
    step = Step(spec(format="openai", judge=JUDGE), comparator)
    step.look()
    for _ in range(40):
        comparator.serve(50)
        judging(comparator, stable=30, candidate=15, tie=5, first=0.6)
        comparator.add("modelrollout_compare_judge_failures_total|||timeout||", 1)
        comparator.add("modelrollout_compare_judge_swaps_total|inconsistent||||", 2)
        result = step.look()
        if result.decisions:
            break
    shown = result.state.comparison.judge
    assert [d.verdict for d in result.decisions] == ["breach: hold"], result.signal.reason
    assert "the judge preferred the stable on" in result.signal.reason and "margin 0" in result.signal.reason
    assert shown.stable_wins == round(30 / 45, 6) and shown.stable_wins_interval[0] > 0.5
    assert shown.position_bias == 0.1 and shown.failures == {"timeout": shown.judged / 50}
    assert shown.swapped == {"inconsistent": 2 * shown.judged / 50}
    assert shown.corrected_interval is None and result.state.comparison.breached == ["judge"]


def test_a_judge_that_cannot_tell_them_apart_passes_and_shows_no_worse_evidence() -> None:
    comparator = Comparator()
    step = Step(spec(format="openai", judge={**JUDGE, "margin": 0.1}), comparator)
    step.look()
    for _ in range(30):
        comparator.serve(50)
        judging(comparator, stable=20, candidate=20, tie=10)
        result = step.look()
        assert result.signal.verdict == AnalysisVerdict.PASS, result.signal.reason
    assert result.state.comparison.evidence["judgeNoWorse"] >= result.state.comparison.threshold["judgeNoWorse"]


def test_a_calibrated_judge_leaning_to_the_stable_is_corrected_by_human_preferences() -> None:
    """The judge prefers the stable 60:40 of decided pairs; on the pairs a human judged too, the human
    overruled one in six of its stable verdicts, so humans split evenly. Raw, the stable leads; corrected,
    it does not."""
    comparator = Comparator()
    calibrated = {**JUDGE, "calibration": True}
    step = Step(spec(format="openai", judge=calibrated, **FEEDBACK), comparator)
    step.look()
    for _ in range(40):
        comparator.serve(50)
        judging(comparator, stable=60, candidate=40, tie=0)
        for cell, n in (("stable/stable", 5), ("stable/candidate", 1), ("candidate/candidate", 4)):
            comparator.add(f"modelrollout_compare_calibration_total|{cell}||||", n)
        result = step.look()
        assert not result.decisions, result.signal.reason
    shown = result.state.comparison.judge
    assert shown.calibration_pairs == 400 and shown.agreement == 0.9
    assert shown.raw_interval[0] > 0.5, "raw, the judge would hold the candidate"
    assert shown.corrected_interval[0] < 0.5 < shown.corrected_interval[1], shown
    assert "judge" not in result.state.comparison.evidence, "calibrated, the corrected interval decides"


def test_pass_when_no_worse_waits_for_the_labels_too_and_records_each_early_pass_with_its_evidence() -> None:
    """The answers agree at once, so disagreement's noWorse decides early; the step ends only once the
    labels show the candidate no less accurate, and both passes land in the decisions."""
    comparator = Comparator()
    step = Step(spec(labels=LABELS, passWhen="noWorse", **FEEDBACK), comparator)
    step.look()
    waited = 0
    for _ in range(60):
        comparator.serve(1000)
        for name, n in (("both-right", 480), ("stable-only", 10), ("candidate-only", 10)):
            comparator.add(f"modelrollout_compare_labelled_total|{name}||||", n)
        result = step.look()
        shown = result.state.comparison
        if shown.passed:
            break
        assert not result.signal.step_passed
        waited += shown.no_worse == ["noWorse"]
    assert waited, "the disagreement decided first: the step waited for the labels"
    assert shown.no_worse == ["noWorse", "labelsNoWorse"] and result.signal.step_passed
    decided = {d.test: d for d in result.decisions}
    assert set(decided) == {"compare noWorse", "compare labelsNoWorse"}
    assert decided["compare labelsNoWorse"].samples == shown.labels.labelled < shown.pairs
    assert decided["compare labelsNoWorse"].statistic >= shown.threshold["labelsNoWorse"] - 1e-4
    assert "no less accurate than maxDrop 0.01" in decided["compare labelsNoWorse"].detail
    assert decided["compare noWorse"].samples == shown.pairs


REGRESSION = {"task": "regression", "maxError": 2.0, "maxIncrease": 0.05}


def errors(comparator: Comparator, differences: dict[int, int], stable: float, candidate: float) -> None:
    """Labelled regression requests: how many fell in each error-difference bucket, and each side's summed error."""
    for bucket, n in differences.items():
        comparator.add(f"modelrollout_compare_error_difference_total|{bucket}||||", n)
        comparator.add("modelrollout_compare_labelled_total|both-right||||", n)
    comparator.add("modelrollout_compare_absolute_error_total||stable|||", stable)
    comparator.add("modelrollout_compare_absolute_error_total||candidate|||", candidate)


def test_a_regression_whose_errors_grow_holds_naming_both_mean_absolute_errors() -> None:
    comparator = Comparator()
    step = Step(spec(labels=REGRESSION, **FEEDBACK), comparator)
    step.look()
    for _ in range(40):
        comparator.serve(100)
        errors(comparator, {20: 50, 23: 40, 18: 10}, stable=30.0, candidate=42.0)  # +0.12 a request, about
        result = step.look()
        if result.decisions:
            break
    shown = result.state.comparison.labels
    assert [d.verdict for d in result.decisions] == ["breach: hold"], result.signal.reason
    assert "mean absolute error is 0.42, the stable's 0.3" in result.signal.reason
    assert "maxIncrease 0.05" in result.signal.reason
    low, high = shown.error_increase_interval
    assert 0.05 < low < 0.12 < high, shown


def test_a_regression_as_accurate_passes_no_worse() -> None:
    comparator = Comparator()
    step = Step(spec(labels={**REGRESSION, "maxIncrease": 0.2}, **FEEDBACK), comparator)
    step.look()
    for _ in range(30):
        comparator.serve(100)
        errors(comparator, {19: 40, 20: 40, 21: 20}, stable=30.0, candidate=30.0)
        result = step.look()
        assert result.signal.verdict == AnalysisVerdict.PASS, result.signal.reason
    assert result.state.comparison.evidence["labelsNoWorse"] >= result.state.comparison.threshold["labelsNoWorse"]



CANARY = {"canary": {"weight": 10, "duration": "1h"}}


def record_of(step: Step) -> ComparisonRecord:
    """What the engine keeps of a compared step's last look (`status.comparisonRecord`)."""
    assert step.state is not None and step.state.comparison is not None
    return ComparisonRecord(comparison=step.state.comparison, counters={
        key: value for key, value in step.state.counters.items() if key.startswith("compare")})


def labelling(comparator: Comparator, cells: dict[str, int]) -> None:
    for name, n in cells.items():
        comparator.add(f"modelrollout_compare_labelled_total|{name}||||", n)


def test_labels_that_arrive_after_the_shadow_step_count_toward_it_and_hold_a_later_step() -> None:
    """The shadow step ends with too few labels to tell; the labels that arrive during the canary step
    add to the shadow step's counts (the same comparator, its totals followed on), and the paired test
    holds the canary once they show the candidate less accurate."""
    comparator = Comparator()
    shown = spec(CANARY, passWhen="noWorse", labels=LABELS, **FEEDBACK)
    shadow = Step(shown, comparator)
    shadow.look()
    for _ in range(3):
        comparator.serve(300)
        labelling(comparator, {"both-right": 9, "stable-only": 1})
        assert not shadow.look().decisions, "30 labels tell nothing yet"
    kept = record_of(shadow)
    assert kept.comparison.labels is not None
    assert kept.comparison.step == 0 and kept.comparison.labels.labelled == 30
    canary = Step(shown, comparator, index=1, record=kept)
    assert compared_step(shown, 1) == 0, "the canary step carries the shadow step's comparison"
    for _ in range(60):
        labelling(comparator, {"both-right": 85, "stable-only": 6, "candidate-only": 1, "both-wrong": 8})
        result = canary.look()
        assert not result.signal.step_passed, "a carried comparison never ends the later step"
        if result.decisions:
            break
    shown_labels = result.state.comparison.labels
    assert [d.verdict for d in result.decisions] == ["breach: hold"], result.signal.reason
    assert result.state.comparison.step == 0 and shown_labels.labelled > 30, "the shadow step's labels, and more"
    assert shown_labels.labelled == 30 + 100 * result.state.looks, shown_labels
    assert result.signal.verdict == AnalysisVerdict.HOLD
    assert "less accurate by more than maxDrop" in result.signal.reason


def test_a_breach_a_human_promoted_past_is_not_carried_into_the_next_step() -> None:
    comparator = Comparator()
    shown = spec(CANARY, labels=LABELS, **FEEDBACK)
    shadow = Step(shown, comparator)
    shadow.look()
    for _ in range(60):
        comparator.serve(100)
        labelling(comparator, {"both-right": 85, "stable-only": 6, "candidate-only": 1, "both-wrong": 8})
        if shadow.look().decisions:
            break
    assert shadow.state is not None and shadow.state.comparison is not None
    assert shadow.state.comparison.breached == ["labels"]
    canary = Step(shown, comparator, index=1, record=record_of(shadow))
    first = canary.look()
    assert first.signal.verdict == AnalysisVerdict.HOLD and "first look of compare" in first.signal.reason
    assert first.state.comparison.breached == [] and not first.decisions, "counted afresh, not re-fired"
