"""One analysis look, judged: fold its measurements into the step's sequential tests, return the engine's signal.

Pure: the measurements come in typed (`readings`), the new status, signal and decisions go out.
Each look reads counter totals and counts what came since the last look, so its cost is the same
at minute 1 and hour 24. The running tests travel in the typed `status.analysis`, so a restarted
operator goes on with the same tests. The tests' policy, and how alpha is spent, live in
`step_tests`; this module feeds them and reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.analysis import comparison, step_tests
from controller.analysis.budget import AlphaBudget
from controller.analysis.guardrails import breach_action, consecutive_failures, outcome_of
from controller.analysis.readings import (
    TAIL_LOOKBACK,
    AnalysisSignal,
    Buckets,
    Conversions,
    ErrorRate,
    Gauge,
    Look,
    Measurements,
    MetricError,
    Outcomes,
    Quantile,
    Query,
    RequestCounts,
    applying,
    compare_of,
    finite,
    histogram_series,
    metric_of,
    shows_shadow,
)
from controller.api import (
    TEST_TEMPLATES,
    ABTestStatus,
    Analysis,
    AnalysisStatus,
    AnalysisVerdict,
    Compare,
    ComparisonRecord,
    ComparisonStatus,
    Decision,
    DecisionVerdict,
    Guardrail,
    GuardrailOutcome,
    GuardrailStatus,
    Metric,
    ModelRolloutSpec,
    SampleRatioStatus,
    ShadowStatus,
    Verdict,
)
from controller.durations import parse_duration
from controller.profiles import GAUGE_TEMPLATES, HISTOGRAM_TEMPLATES, profile
from controller.stats import counts_from_cumulative, histogram_drift
from controller.timestamps import parse_timestamp

QUANTILES = {template: q for template, (_, q) in HISTOGRAM_TEMPLATES.items()}
VERDICTS = {step_tests.NONE: Verdict.INCONCLUSIVE, step_tests.WORSE: Verdict.CANDIDATE_WORSE,
            step_tests.BETTER: Verdict.CANDIDATE_BETTER, step_tests.NO_DIFFERENCE: Verdict.NO_DIFFERENCE}
# JSON has no infinity: an empty detector is stored as this log value.
LOG_ZERO = -1e9
# A predictionPSI breach needs its histograms to differ at this level too (KS on the grouped predictions, exact
# for small samples): with no drift a look breaches at most this often, however few the predictions. PSI alone
# has no such bound: its spread under no drift grows as 1/n (Yurdakul 2018, "Statistical Properties of
# Population Stability Index", Western Michigan University).
DRIFT_SIGNIFICANCE = 0.0001
# A test's first look reads the counters and counts nothing yet: it holds, it does not pass.
BASELINE = "counting from this look"


@dataclass
class Result:
    signal: AnalysisSignal
    state: AnalysisStatus
    decisions: list[Decision] = field(default_factory=list)


def _floats(array: Any) -> list[float]:
    # Ten significant digits: the running tests live in status, written at every look.
    return [float(f"{max(float(v), LOG_ZERO):.10g}") for v in np.asarray(array).ravel()]


def _row(values: list[float]) -> Any:
    return np.array([values], dtype=np.float64)


class NoBaseline(LookupError):
    """The first look of a counter: there is nothing yet to count from."""


class IntervalOpen(LookupError):
    """One arm's requests moved since the interval opened and the other's did not: Prometheus has not
    scraped the other arm's pods since (each pod at its own phase). The interval stays open."""


# An interval stays open for one arm's scrape at most this long: past it, an arm that still counts
# nothing is what the tests must see (a candidate the route starves), not a scrape to wait for.
OPEN_LIMIT_SECONDS = 180.0


def _interval(values: list[float | None]) -> step_tests.Interval:
    if any(value is None for value in values):
        raise NoBaseline
    return step_tests.Interval.of(*(float(value or 0.0) for value in values))


class Evaluator:
    def __init__(self, spec: ModelRolloutSpec, analysis: Analysis, measured: Measurements, look: Look,
                 previous: AnalysisStatus | None, record: ComparisonRecord | None = None) -> None:
        self.spec, self.analysis, self.measured, self.look, self.previous = spec, analysis, measured, look, previous
        self.record = record
        self.counters: dict[str, float] = {}
        # Totals read at this look, kept in `counters` only when their interval closes.
        self.read: dict[str, float] = {}

    def requests(self, version: str) -> dict[str, float]:
        """Requests so far by outcome (ok, error). A gateway that has no series for an arm's backend never
        saw it (or its stats are gone): that is said, not read as no errors."""
        counted = self.measured.outcomes(RequestCounts(version))
        gateway = self.analysis.gateway_profile
        if gateway is not None and counted.sampled_at is None:
            arm = "candidate" if version == self.look.candidate else "stable"
            raise MetricError(f"gatewayProfile {gateway} has no request counts for the {arm} ({version}): "
                              "the gateway's stats for its backend are missing")
        return {"ok": counted.ok, "error": counted.error}

    def since_last(self, key: str, total: float) -> float | None:
        """What a counter gained since the last look (None at its first); remembers the total.

        A total that is not a number is not remembered: the look reports it, and the next counts
        from the last good total."""
        before = self.previous.counters.get(key) if self.previous else None
        if not math.isfinite(total):
            return math.nan if before is not None else None
        self.read[key] = total
        return None if before is None else total - before

    def close(self, prefix: str, stable_trials: float | None, candidate_trials: float | None) -> None:
        """Close the interval of the counters read under `prefix`, or raise IntervalOpen.

        Each pod is scraped at its own phase, so between two looks one arm's counters may have moved
        while the other's still show the last scrape. Counting such an interval gives one arm's
        requests with none of the other's: a sample-ratio "mismatch" that is the scrape phase, and
        guardrail intervals with no evidence in them. An interval closes only once both arms' requests
        have moved since it opened (or neither has), so both arms' counts span a scrape each; the
        stopping rule reads the trials only, so the tests' conditional laws are untouched.
        """
        opened = self.previous.counters.get(f"{prefix}/closedAt") if self.previous else None
        values = [value for value in (stable_trials, candidate_trials) if value is not None and math.isfinite(value)]
        moved = [value is not None and math.isfinite(value) and value > 0
                 for value in (stable_trials, candidate_trials)]
        waited = opened is not None and self.look.step_elapsed_seconds - opened >= OPEN_LIMIT_SECONDS
        # A counter that went backwards (a pod restarted or replaced) closes at once, so that the reset is
        # skipped now: held open, the arm would count from its old total until the limit.
        reset = any(value < 0 for value in values)
        read = {key: self.read.pop(key) for key in [key for key in self.read if key.startswith(prefix + "/")]}
        if moved[0] != moved[1] and opened is not None and not waited and not reset:
            raise IntervalOpen
        self.counters.update(read)
        self.counters[f"{prefix}/closedAt"] = self.look.step_elapsed_seconds

    # --- statistical guardrails ---------------------------------------------------------------

    def windowed(self, guardrail: Guardrail) -> tuple[float | None, float | None]:
        look, window = self.look, self.look.window(self.analysis)
        if window is None:
            return None, None
        if guardrail.template == "errorRate":
            return (self.measured.scalar(ErrorRate(look.candidate, window)),
                    self.measured.scalar(ErrorRate(look.stable, window)))
        q, series = QUANTILES[guardrail.template or ""], histogram_series(guardrail)
        return (self.measured.scalar(Quantile(q, series, look.candidate, window)),
                self.measured.scalar(Quantile(q, series, look.stable, window)))

    def error_interval(self, name: str) -> step_tests.Interval:
        values: list[float | None] = []
        for arm, version in (("stable", self.look.stable), ("candidate", self.look.candidate)):
            totals = self.requests(version)
            values += [self.since_last(f"{name}/{arm}/events", totals.get("error", 0.0)),
                       self.since_last(f"{name}/{arm}/trials", sum(totals.values()))]
        self.close(name, values[1], values[3])
        return _interval(values)

    def slow_thresholds(self, guardrail: Guardrail, before: GuardrailStatus | None) -> tuple[float, float] | None:
        if before is not None and before.slow_above:
            return before.slow_above[0], before.slow_above[1]
        # The stable's recent past, before this step too (the stable has not changed): over the
        # window, or over TAIL_LOOKBACK when the window holds too few requests to see the tail.
        for lookback in (self.analysis.window, TAIL_LOOKBACK):
            buckets = self.measured.buckets(Buckets(histogram_series(guardrail), self.look.stable, lookback))
            edges = sorted(buckets)
            bounds = step_tests.slow_thresholds(edges, [buckets[e] for e in edges],
                                                QUANTILES[guardrail.template or ""],
                                                guardrail.relative_to_stable or 1.0)
            if bounds is not None:
                return bounds
        return None

    def slow_bounds(self, guardrail: Guardrail, before: GuardrailStatus | None, common: dict[str, Any]
                    ) -> tuple[float, float] | GuardrailStatus:
        """The slow-request bounds, or the status that says why there are none yet."""
        try:
            bounds = self.slow_thresholds(guardrail, before)
        except step_tests.Unresolvable as refused:
            # Refused, not run at the ratio the buckets happen to allow: that would pass what it should catch.
            return GuardrailStatus(outcome=GuardrailOutcome.ERROR, reason=f"refused: {refused}", **common)
        if bounds is None:
            return GuardrailStatus(outcome=GuardrailOutcome.NO_DATA,
                                   reason="too few stable requests yet to place the slow-request bound", **common)
        return bounds

    def slow_interval(self, guardrail: Guardrail, thresholds: tuple[float, float]) -> step_tests.Interval:
        name, series = guardrail.name, histogram_series(guardrail)
        values: list[float | None] = []
        for arm, version, bound in (("stable", self.look.stable, thresholds[0]),
                                    ("candidate", self.look.candidate, thresholds[1])):
            buckets = self.measured.buckets(Buckets(series, version))
            total = buckets.get(math.inf, 0.0)
            fast = next((count for le, count in buckets.items() if math.isclose(le, bound, rel_tol=1e-9)), total)
            values += [self.since_last(f"{name}/{arm}/events", total - fast),
                       self.since_last(f"{name}/{arm}/trials", total)]
        self.close(name, values[1], values[3])
        return _interval(values)

    def statistical(self, guardrail: Guardrail, budget: AlphaBudget) -> tuple[GuardrailStatus, bool]:
        """(status, breached) of a test guardrail at this look; raises MetricError."""
        before = self.previous.guardrails.get(guardrail.name) if self.previous else None
        latency = guardrail.template in QUANTILES
        tolerated = 1.0 if latency else (guardrail.relative_to_stable or 1.0)
        test = step_tests.guardrail_test(budget, tolerated, self.look.interval_seconds, self.look.step_seconds)
        alpha = budget.per_guardrail
        value, stable = self.windowed(guardrail)
        common: dict[str, Any] = {"value": finite(value), "stable": finite(stable), "alpha": alpha}
        thresholds = self.slow_bounds(guardrail, before, common) if latency else None
        if isinstance(thresholds, GuardrailStatus):
            return thresholds, False
        if thresholds is not None:
            common["slow_above"] = list(thresholds)
        carried: dict[str, Any] = {} if before is None else {
            "cumulative": before.cumulative, "detector_state": before.detector_state, "looks": before.looks,
            "restarts": before.restarts, "events": before.events, "trials": before.trials}
        try:
            interval = self.slow_interval(guardrail, thresholds) if thresholds else \
                self.error_interval(guardrail.name)
        except NoBaseline:
            return GuardrailStatus(outcome=GuardrailOutcome.PASSED, reason=BASELINE, **common, **carried), False
        except IntervalOpen:
            assert before is not None  # the first look always closes
            return before.model_copy(update=common), False
        problem = step_tests.problem(interval)
        if problem is not None:
            outcome = GuardrailOutcome.NO_DATA if problem.reset else GuardrailOutcome.ERROR
            return GuardrailStatus(outcome=outcome, reason=problem.message, **common, **carried), False
        state = step_tests.GuardrailState.start(1) if before is None or not before.cumulative else \
            step_tests.GuardrailState(_row(before.cumulative), _row(before.detector_state), before.looks,
                                      before.restarts, np.array(before.events[:1]), np.array(before.trials[:1]))
        look = step_tests.guardrail_look(test, state, interval)
        evidence, detected = float(look.evidence[0]), float(look.detector[0])
        worse = bool(look.breached[0])
        within_floor = guardrail.ignore_below is not None and (value is None or not value > guardrail.ignore_below)
        over_max = guardrail.max is not None and value is not None and value > guardrail.max
        failures = consecutive_failures(before.consecutive_failures if before else 0,
                                        GuardrailOutcome.BREACHED if over_max else GuardrailOutcome.PASSED)
        ceiling = over_max and failures > guardrail.failure_limit
        breached = (worse and not within_floor) or ceiling
        what = "errors" if not latency else "slow requests"
        if ceiling and not (worse and not within_floor):
            reason = f"{_fmt(value)} > max {guardrail.max:g} for {failures} look(s) in a row"
        elif breached and evidence >= test.cumulative_threshold:
            reason = (f"candidate's {what} outrun the stable's beyond doubt (log e-value {evidence:.1f} "
                      f">= {test.cumulative_threshold:.1f})")
        elif breached:
            reason = (f"candidate's {what} outrun the stable's since a recent change (change detector "
                      f"{detected:.1f} >= {look.detector_threshold:.1f})")
        elif worse:
            reason = (f"candidate's {what} outrun the stable's, but {_fmt(value)} is within ignoreBelow "
                      f"{guardrail.ignore_below:g}")
        else:
            reason = (f"no evidence the candidate is worse (log e-value {evidence:.1f} "
                      f"< {test.cumulative_threshold:.1f})")
        outcome = GuardrailOutcome.BREACHED if breached else GuardrailOutcome.PASSED
        if value is None and not breached and not interval.candidate_trials[0] > 0:
            outcome, reason = GuardrailOutcome.NO_DATA, f"no candidate requests over the window; {reason}"
        base = before or GuardrailStatus(outcome=GuardrailOutcome.PASSED)
        counts = [float(interval.stable_events[0]), float(interval.candidate_events[0])]
        trials = [float(interval.stable_trials[0]), float(interval.candidate_trials[0])]
        status = GuardrailStatus(
            outcome=outcome, reason=reason, **common,
            evidence=evidence, evidence_threshold=test.cumulative_threshold, detector=detected,
            detector_threshold=look.detector_threshold, consecutive_failures=failures,
            cumulative=_floats(look.state.cumulative),
            detector_state=_floats(look.state.detector), looks=look.state.looks, restarts=look.state.restarts,
            events=[a + b for a, b in zip(base.events, counts, strict=True)],
            trials=[a + b for a, b in zip(base.trials, trials, strict=True)],
        )
        return status, breached

    # --- threshold guardrails ----------------------------------------------------------------

    def threshold(self, guardrail: Guardrail) -> tuple[GuardrailStatus, bool]:
        look, window = self.look, self.look.window(self.analysis)
        before = self.previous.guardrails.get(guardrail.name) if self.previous else None
        if window is None:
            return GuardrailStatus(outcome=GuardrailOutcome.NO_DATA, reason="the step has only begun"), False
        if guardrail.template == "predictionPSI":
            drift = self.drift()
            value, stable = (None if drift is None else finite(drift.psi)), None
            if drift is not None and value is not None and guardrail.max is not None and value > guardrail.max \
                    and drift.ks_pvalue >= DRIFT_SIGNIFICANCE:
                # A PSI over its bound, on histograms that do not differ beyond chance: small samples
                # inflate PSI (the A/A read-path cell breached nearly always at 40 predictions an arm).
                reason = (f"PSI {value:.3g} over max {guardrail.max:g}, but the two histograms do not differ "
                          f"beyond chance (KS p={drift.ks_pvalue:.2g} on {sum(drift.stable_counts):.0f} stable "
                          f"and {sum(drift.candidate_counts):.0f} candidate predictions)")
                return GuardrailStatus(outcome=GuardrailOutcome.NO_DATA, reason=reason, value=value,
                                       consecutive_failures=before.consecutive_failures if before else 0), False
        elif guardrail.template in GAUGE_TEMPLATES:
            value, stable = (self.measured.scalar(Gauge(guardrail.template, version, window))
                             for version in (look.candidate, look.stable))
        else:
            assert guardrail.query is not None
            value, stable = (self.measured.scalar(Query(guardrail.query, version, window))
                             for version in (look.candidate, look.stable))
        outcome, reason = outcome_of(guardrail, finite(value), finite(stable))
        failures = consecutive_failures(before.consecutive_failures if before else 0, outcome)
        acting = outcome == GuardrailOutcome.BREACHED and failures > guardrail.failure_limit
        return GuardrailStatus(outcome=outcome, reason=reason, value=finite(value), stable=finite(stable),
                               consecutive_failures=failures), acting

    def drift(self) -> Any:
        look, window = self.look, self.look.window(self.analysis)
        if window is None:
            return None
        if profile(self.analysis.profile).predictions is None:
            return None  # the shadow comparison needs a prediction histogram; this server exports none
        stable = self.measured.buckets(Buckets("predictions", look.stable, window))
        candidate = self.measured.buckets(Buckets("predictions", look.candidate, window))
        edges = sorted(set(stable) & set(candidate))
        if len(edges) < 2:
            return None
        result = histogram_drift(counts_from_cumulative([stable[le] for le in edges]),
                                 counts_from_cumulative([candidate[le] for le in edges]))
        return None if result.insufficient_data else result

    # --- the abTest -------------------------------------------------------------------------

    def metric_interval(self, metric: Metric) -> step_tests.Interval:
        look = self.look
        values: list[float | None] = []
        for arm, version in (("stable", look.stable), ("candidate", look.candidate)):
            if metric.template is not None:
                totals = self.requests(version)
                if metric.template == "conversion":
                    successes = self.measured.scalar(Conversions(version)) or 0.0
                    trials = totals.get("ok", 0.0)
                else:
                    successes, trials = totals.get("ok", 0.0), sum(totals.values())
                values += [self.since_last(f"abTest/{arm}/successes", successes),
                           self.since_last(f"abTest/{arm}/trials", trials)]
                continue
            assert metric.successes is not None and metric.trials is not None
            for part, query in (("successes", metric.successes), ("trials", metric.trials)):
                value = self.measured.scalar(Query(query, version, look.since_last_look())) or 0.0
                # With {{window}} the query is already this look's count.
                values.append(value if "{{window}}" in query else self.since_last(f"abTest/{arm}/{part}", value))
        # A {{window}} query counts each look afresh: its interval cannot stay open.
        windowed = metric.template is None and "{{window}}" in f"{metric.successes}{metric.trials}"
        self.close("abTest", *((None, None) if windowed else (values[1], values[3])))
        return _interval(values)

    def ab_test(self, metric: Metric) -> tuple[ABTestStatus, str | None]:
        """(status, error): the abTest after this look, and why the look could not count, if so."""
        step = self.spec.strategy.steps[self.look.step_index].ab_test
        assert step is not None
        before = self.previous.ab_test if self.previous and self.previous.ab_test else None
        base = before if before is not None and before.metric == metric.name else ABTestStatus(metric=metric.name)
        try:
            interval = self.metric_interval(metric)
        except (NoBaseline, IntervalOpen):
            return base, None
        problem = step_tests.problem(interval)
        if problem is not None:
            return base, None if problem.reset else problem.message
        successes = [base.successes[0] + float(interval.stable_events[0]),
                     base.successes[1] + float(interval.candidate_events[0])]
        trials = [base.trials[0] + float(interval.stable_trials[0]),
                  base.trials[1] + float(interval.candidate_trials[0])]
        if base.counted is None:
            design_looks = base.design_looks + int(float(interval.stable_trials[0] + interval.candidate_trials[0]) > 0)
            if sum(trials) < step_tests.DESIGN_TRIALS and design_looks < step_tests.DESIGN_LOOKS:
                return base.model_copy(update={"successes": successes, "trials": trials,
                                               "design_looks": design_looks}), None
            design = step_tests.ab_design(step.alpha, step.minimum_detectable_effect, step.effect,
                                          metric.higher_is_better, sum(successes), sum(trials))
            weight = self.look.weight / 100
            plan = step_tests.plan(design, weight if 0 < weight < 1 else 0.5)
            # The design sample chose the test; it is not the test's evidence.
            return ABTestStatus(
                metric=metric.name, verdict=Verdict.INCONCLUSIVE, counted=design.counted, baseline=design.baseline,
                bounds=[design.low, design.high], design_looks=design_looks, samples_needed=plan.sequential_median,
                samples_needed_p80=plan.sequential_p80, fixed_horizon_samples=plan.fixed_horizon), None
        assert base.baseline is not None and base.bounds is not None
        design = step_tests.ABDesign(step.alpha, base.counted, base.baseline, base.bounds[0], base.bounds[1],
                                     step_tests.better_direction(base.counted, metric.higher_is_better))
        state = step_tests.ABState.start(1)
        if base.tests:
            state = step_tests.ABState({name: _row(base.tests[name]) for name in step_tests.AB_TESTS},
                                       {name: np.array([base.evidence[name]]) for name in step_tests.AB_TESTS})
        look = step_tests.ab_look(design, state, interval)
        stable_rate = successes[0] / trials[0] if trials[0] else None
        candidate_rate = successes[1] / trials[1] if trials[1] else None
        samples = int(min(trials))
        return base.model_copy(update={
            "verdict": VERDICTS[int(look.verdict[0])], "successes": successes, "trials": trials,
            "stable_rate": finite(stable_rate), "candidate_rate": finite(candidate_rate),
            "effect": finite(candidate_rate / stable_rate - 1) if stable_rate and candidate_rate is not None
            else None,
            "samples": samples,
            "progress": round(min(samples / base.samples_needed, 1.0), 4) if base.samples_needed else 0.0,
            "evidence": {name: max(float(look.state.peaks[name][0]), LOG_ZERO) for name in step_tests.AB_TESTS},
            "tests": {name: _floats(look.state.tests[name]) for name in step_tests.AB_TESTS},
        }), None

    # --- the sample-ratio check ---------------------------------------------------------------

    def sample_ratio(self, share: float) -> SampleRatioStatus | None:
        if not self.look.sample_ratio_due():
            return None
        before = self.previous.sample_ratio if self.previous else None
        base = before or SampleRatioStatus(expected_share=share)
        arms = (("stable", self.look.stable), ("candidate", self.look.candidate))
        read = [self.measured.outcomes(RequestCounts(version)) for _, version in arms]
        gained = [self.since_last(f"sampleRatio/{arm}/requests", counted.ok + counted.error)
                  for (arm, _), counted in zip(arms, read, strict=True)]
        covered = [self.since_last(f"sampleRatio/{arm}/sampledAt", counted.sampled_at)
                   if counted.sampled_at is not None else None for (arm, _), counted in zip(arms, read, strict=True)]
        try:
            self.close("sampleRatio", *gained)
        except IntervalOpen:
            return base
        counts = [c for c in gained if c is not None]
        first_scrape = any(counted.sampled_at is not None and span is None
                           for counted, span in zip(read, covered, strict=True))
        if len(counts) < 2 or first_scrape:
            # A first look, or an arm's first scrape: its counts began before anything here could time them.
            # (An arm with no series at all is counted as it is: zero requests.)
            return base
        if step_tests.count_problem(counts) is not None:
            return base  # a reset, or a count no traffic makes: this interval is left out
        timed = [span for span in covered if span is not None]
        opened = self.previous.counters.get("sampleRatio/closedAt") if self.previous else None
        # A span exceeds the interval by the age of its first scrape, and older than the window is a gap.
        longest = (self.look.step_elapsed_seconds - opened if opened is not None else 0.0) + parse_duration(
            self.analysis.window)
        if any(not math.isfinite(span) or not 0 < span <= longest for span in timed):
            # Scrape times that went backwards, or jumped past anything a scrape phase explains: the
            # series changed under the query (a pod gone, another Prometheus). Left out, like a reset.
            return base
        test = step_tests.SampleRatioTest(share)
        tests = {name: _row(values) for name, values in base.tests.items()} or step_tests.start_sample_ratio(1)
        spans = None
        if len(timed) == 2:
            spans = (np.array([timed[0]]), np.array([timed[1]]))
        look = step_tests.sample_ratio_look(test, tests, np.array([counts[0]]), np.array([counts[1]]), spans)
        return base.model_copy(update={
            "requests": [base.requests[0] + counts[0], base.requests[1] + counts[1]],
            "evidence": float(look.evidence[0]), "threshold": test.threshold,
            "mismatch": base.mismatch or bool(look.mismatch[0]),
            "tests": {name: _floats(values) for name, values in look.tests.items()},
        })


def _pvalue(log_evidence: float) -> float:
    """The anytime-valid p-value of an e-value: min(1, 1 / e)."""
    return math.exp(-max(log_evidence, 0.0))


def _fmt(value: float | None) -> str:
    return "no value" if value is None else f"{value:.4g}"


@dataclass
class _Findings:
    """What this run's checks found, before they become one signal."""

    failing: list[tuple[str, str]] = field(default_factory=list)
    holding: list[str] = field(default_factory=list)
    counting: list[str] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


def judge(spec: ModelRolloutSpec, budget: AlphaBudget, look: Look, previous: AnalysisStatus | None,
          measured: Measurements, record: ComparisonRecord | None = None) -> Result:
    """The look's verdict from its measurements (`readings.needs` named them); pure. `record`: the
    comparison of an earlier step that a look at a later one carries on."""
    analysis = spec.analysis
    assert analysis is not None
    evaluator = Evaluator(spec, analysis, measured, look, previous, record)
    found = _Findings()
    guardrails = _guardrails(evaluator, budget, found)
    shadow = _shadow(evaluator) if shows_shadow(analysis, look) else None
    ab_status = _ab_test(evaluator, found)
    sample_ratio, halt = _sample_ratio(evaluator, found)
    compared = _comparison(evaluator, found)
    ages = _scrape_ages(look, measured)
    _scrape_gap(ages, parse_duration(analysis.window), found)

    errors = (previous.consecutive_errors if previous else 0) + 1 if found.unmeasured else 0
    verdict = None if ab_status is None else ab_status.verdict
    decided_by = None
    if found.failing:
        decided_by = found.failing[0][0]
        signal = AnalysisSignal(AnalysisVerdict.FAIL, "guardrail breached: " + "; ".join(
            f"{name}: {reason}" for name, reason in found.failing), verdict)
    elif halt:
        decided_by = "sampleRatio"
        signal = AnalysisSignal(AnalysisVerdict.HALT, halt, verdict)
    elif found.unmeasured and errors >= analysis.error_limit:
        signal = AnalysisSignal(AnalysisVerdict.ERROR,
                                f"{errors} analysis runs without data: " + "; ".join(found.unmeasured))
    elif found.holding or found.unmeasured:
        signal = AnalysisSignal(AnalysisVerdict.HOLD, "; ".join(found.holding + found.unmeasured), verdict)
    elif found.counting:
        signal = AnalysisSignal(AnalysisVerdict.HOLD, f"first look of {', '.join(found.counting)}: counting "
                                "requests from now", verdict)
    else:
        decided_by = "abTest" if verdict not in (None, Verdict.INCONCLUSIVE) else None
        passed = compared is not None and compared.passed
        signal = AnalysisSignal(AnalysisVerdict.PASS, "the comparison shows the candidate no worse" if passed
                                else "all guardrails pass", verdict, step_passed=passed)
    state = AnalysisStatus(
        step=look.step_index, step_started_at=look.step_started_at, last_run=look.now,
        looks=(previous.looks if previous else 0) + 1, verdict=signal.verdict, reason=signal.reason,
        decided_by=decided_by, consecutive_errors=errors,
        counters={**(previous.counters if previous else {}), **evaluator.counters},
        guardrails=guardrails, ab_test=ab_status, sample_ratio=sample_ratio, shadow=shadow, comparison=compared,
        oldest_scrape_seconds=_oldest_scrape(ages, previous),
    )
    return Result(signal, state, found.decisions)


def _scrape_ages(look: Look, measured: Measurements) -> dict[str, float]:
    """Each arm's age at this look: the look's time less the mean time of its last scrapes."""
    try:
        now = parse_timestamp(look.now).timestamp()
    except ValueError:
        return {}  # a look with no clock: a simulation
    read = {arm: measured.values.get(RequestCounts(version))
            for arm, version in (("stable", look.stable), ("candidate", look.candidate))}
    return {arm: now - value.sampled_at for arm, value in read.items()
            if isinstance(value, Outcomes) and value.sampled_at is not None}


def _scrape_gap(ages: dict[str, float], window: float, found: _Findings) -> None:
    """Counts older than analysis.window are a scrape gap, not a quiet model: the step holds, saying so,
    rather than pass on evidence that stopped growing."""
    for arm, age in ages.items():
        if age > window:
            found.holding.append(f"the {arm}'s counts were last scraped {age:.0f} s ago, longer than "
                                 f"analysis.window ({window:g} s): waiting for scrapes")


def _oldest_scrape(ages: dict[str, float], previous: AnalysisStatus | None) -> float | None:
    """The oldest the request counts have been at a look of this step (`_scrape_ages`), the older arm."""
    before = previous.oldest_scrape_seconds if previous else None
    return max([*ages.values(), *([] if before is None else [before])], default=None)


def _guardrails(evaluator: Evaluator, budget: AlphaBudget, found: _Findings
                ) -> dict[str, GuardrailStatus]:
    look, previous = evaluator.look, evaluator.previous
    statuses: dict[str, GuardrailStatus] = {}
    for guardrail in applying(evaluator.analysis, look):
        try:
            if guardrail.template in TEST_TEMPLATES:
                status, acting = evaluator.statistical(guardrail, budget)
            else:
                status, acting = evaluator.threshold(guardrail)
        except (MetricError, ValueError, ArithmeticError) as error:
            # An unreachable Prometheus, or a count no check foresaw: an Error outcome with its message.
            before = previous.guardrails.get(guardrail.name) if previous else None
            status = (before or GuardrailStatus(outcome=GuardrailOutcome.ERROR)).model_copy(
                update={"outcome": GuardrailOutcome.ERROR, "reason": str(error)})
            acting = False
        statuses[guardrail.name] = status
        if status.outcome in (GuardrailOutcome.ERROR, GuardrailOutcome.NO_DATA):
            found.unmeasured.append(f"{guardrail.name}: {status.reason}")
        elif status.reason == BASELINE:
            found.counting.append(guardrail.name)
        if acting:
            action = breach_action(guardrail)
            if action == "rollback":
                found.failing.append((guardrail.name, status.reason))
            else:
                found.holding.append(f"{guardrail.name}: {status.reason}")
            evidence = max(status.evidence or LOG_ZERO, status.detector or LOG_ZERO)
            found.decisions.append(Decision(
                step=look.step_index, test=f"guardrail {guardrail.name}",
                verdict=DecisionVerdict(f"breach: {action}"), at=look.now,
                statistic=evidence if status.evidence is not None else None, p_value=_pvalue(evidence),
                effect=None if status.value is None or status.stable is None
                else finite(status.value - status.stable), detail=status.reason))
    return statuses


def _ab_test(evaluator: Evaluator, found: _Findings) -> ABTestStatus | None:
    look, previous = evaluator.look, evaluator.previous
    step = evaluator.spec.strategy.steps[look.step_index]
    metric = metric_of(evaluator.analysis, step.ab_test.metric) if step.ab_test is not None else None
    if metric is None:
        return None
    status: ABTestStatus | None
    try:
        status, problem = evaluator.ab_test(metric)
    except MetricError as error:
        status, problem = previous.ab_test if previous else None, str(error)
    except (ValueError, ArithmeticError) as error:
        # A count no check foresaw: an Error outcome with its message, never a dead reconcile.
        status, problem = previous.ab_test if previous else None, f"cannot test these counts: {error}"
    if problem is not None:
        found.unmeasured.append(f"abTest {metric.name}: {problem}")
    earlier = previous.ab_test.verdict if previous and previous.ab_test else None
    if status is not None and status.verdict not in (None, Verdict.INCONCLUSIVE, earlier):
        found.decisions.append(_ab_decision(look, status))
    return status


def _sample_ratio(evaluator: Evaluator, found: _Findings) -> tuple[SampleRatioStatus | None, str | None]:
    look, previous = evaluator.look, evaluator.previous
    if look.expected_share is None:
        return None, None
    try:
        status = evaluator.sample_ratio(look.expected_share)
    except MetricError as error:
        found.unmeasured.append(f"sampleRatio: {error}")
        status = previous.sample_ratio if previous else None
    if status is None or not status.mismatch:
        return status, None
    stable_n, candidate_n = status.requests
    return status, (f"sample ratio mismatch: {stable_n:.0f}/{candidate_n:.0f} requests for a "
                    f"{100 - look.weight}/{look.weight} split (log e-value {status.evidence or 0:.1f})")


def _comparison(evaluator: Evaluator, found: _Findings) -> ComparisonStatus | None:
    """A shadow step's comparison of answers (`analysis.comparison`): its breaches, what holds it, and
    whether it passed early."""
    look, previous = evaluator.look, evaluator.previous
    compare = compare_of(evaluator.spec, look)
    if compare is None:
        return None
    before = previous.comparison if previous else None
    earlier = previous.counters if previous else {}
    if look.compared_step != look.step_index:
        # A later step carries the compared step on, for the labels that arrive after it: from its
        # record (a first look here), never ending this step early, nor deciding a pass again.
        compare = compare.model_copy(update={"pass_when": "duration"})
        record = evaluator.record
        # A breach there was a human's to act on, and they did (promoted past it): it is not re-fired here.
        if before is None and record is not None and record.comparison.step == look.compared_step \
                and not record.comparison.breached:
            before, earlier = record.comparison.model_copy(update={"passed": False}), record.counters
    try:
        totals = evaluator.measured.comparisons()
    except MetricError as error:
        found.unmeasured.append(f"compare: {error}")
        return before
    prefix, marker = "compare/", "compare@looked"  # the marker: a first look that read no series at all
    counted = ({key.removeprefix(prefix): value for key, value in earlier.items() if key.startswith(prefix)}
               if marker in earlier else None)
    if not totals and counted:
        # Series the last look read are gone: the comparator is not scraped (or not running).
        found.unmeasured.append("compare: the comparator's counts are missing: is its pod running and scraped?")
        return before
    result, now = comparison.look(compare, evaluator.analysis.alpha, totals, before, counted, look.compared_step)
    evaluator.counters.update({prefix + key: value for key, value in now.items()})
    evaluator.counters[marker] = 1.0
    status = result.status
    if counted is None:
        found.counting.append("compare")
    elif result.holding is not None:
        found.holding.append(f"compare: {result.holding}")
    elif not totals:
        # Never scraped: a comparator Prometheus does not see is a setup to fix, said through errorLimit.
        found.unmeasured.append("compare: the comparator's counts are not in Prometheus: is its pod scraped "
                                "(see the README's scrape config)?")
    elif status.pairs == 0:
        found.holding.append("compare: no request compared yet")
    for name in status.breached:
        action = comparison.on_breach(compare, name)
        reason = next((why for test, _, why in result.breaches if test == name), "breached earlier in this step")
        if action == "rollback":
            found.failing.append((f"compare {name}", reason))
        else:
            found.holding.append(f"compare {name}: {reason}")
    found.decisions.extend(_comparison_decisions(look, status, result.breaches, before, compare))
    return status


def _comparison_decisions(look: Look, status: ComparisonStatus, breaches: tuple[tuple[str, str, str], ...],
                          before: ComparisonStatus | None, compare: Compare) -> list[Decision]:
    """This look's new breaches, and the early passes that end the step, each with its evidence and what it
    counted."""
    decisions = []
    for name, on_breach, reason in breaches:
        evidence = status.evidence.get(name)
        decisions.append(Decision(
            step=look.step_index, test=f"compare {name}", verdict=DecisionVerdict(f"breach: {on_breach}"),
            at=look.now, statistic=evidence, p_value=None if evidence is None else _pvalue(evidence),
            samples=int(_samples(name, status)), detail=reason))
    if not status.passed or (before is not None and before.passed):
        return decisions
    for name in status.no_worse:  # the step ends: each early pass it needed, with its evidence
        evidence = status.evidence.get(name)
        if name == "judgeNoWorse" and status.judge is not None and status.judge.corrected_interval:
            evidence = None  # the corrected interval decided, not the raw e-value
        decisions.append(Decision(
            step=look.step_index, test=f"compare {name}", verdict=DecisionVerdict.NO_WORSE, at=look.now,
            statistic=evidence, p_value=None if evidence is None else _pvalue(evidence),
            samples=int(_samples(name, status)), detail=_no_worse_detail(name, status, compare)))
    return decisions


def _samples(test: str, status: ComparisonStatus) -> float:
    """What a comparison test counted: labelled requests, judged pairs, or compared requests."""
    if test.startswith("labels") and status.labels is not None:
        return status.labels.labelled
    if test.startswith("judge") and status.judge is not None:
        return status.judge.judged
    return status.pairs


def _no_worse_detail(test: str, status: ComparisonStatus, compare: Compare) -> str:
    if test == "labelsNoWorse" and status.labels is not None and compare.labels is not None:
        found = status.labels
        if compare.labels.max_error is not None:
            low, high = found.error_increase_interval or [0.0, 0.0]
            return (f"on {found.labelled:.0f} labelled requests the candidate's mean absolute error minus the "
                    f"stable's is in [{low:.4g}, {high:.4g}]: no more than maxIncrease "
                    f"{compare.labels.max_increase or 0:g}")
        return (f"on {found.labelled:.0f} labelled requests the candidate was right on "
                f"{100 * (found.candidate_accuracy or 0):.1f}%, the stable on {100 * (found.stable_accuracy or 0):.1f}%"
                f": no less accurate than maxDrop {compare.labels.max_drop:g} allows")
    if test == "judgeNoWorse" and status.judge is not None and compare.judge is not None:
        found_judge = status.judge
        interval = found_judge.corrected_interval or found_judge.stable_wins_interval or [0.0, 1.0]
        what = "the stable's share, corrected by human preferences," if found_judge.corrected_interval else \
            "the stable's share of the decided pairs"
        return (f"over {found_judge.judged:.0f} judged pairs {what} is [{interval[0]:.3f}, {interval[1]:.3f}]: below "
                f"1/2 + margin {compare.judge.margin:g}")
    return (f"the candidate differs from the stable no more than the stable from itself plus "
            f"{compare.disagreement.max_excess:g}, over {status.pairs:.0f} requests")


def _shadow(evaluator: Evaluator) -> ShadowStatus | None:
    """Without a drift guardrail the shadow comparison is still shown, never acted on."""
    try:
        drift = evaluator.drift()
    except MetricError:
        return None
    if drift is None:
        return None
    return ShadowStatus(psi=finite(drift.psi), ks=finite(drift.ks_statistic),
                        jensen_shannon=finite(drift.jensen_shannon))


def _ab_decision(look: Look, status: ABTestStatus) -> Decision:
    evidence = max(status.evidence.values()) if status.evidence else None
    return Decision(
        step=look.step_index, test="anytime-valid split test", verdict=DecisionVerdict(str(status.verdict)),
        at=look.now,
        statistic=evidence, p_value=None if evidence is None else _pvalue(evidence), effect=status.effect,
        samples=int(sum(status.trials)),
        detail=(f"{status.metric}: stable {_fmt(status.stable_rate)}, candidate {_fmt(status.candidate_rate)}; "
                f"the design expected {status.samples_needed} in the smaller arm for the MDE"),
    )

