"""One analysis run: query the provider, judge guardrails and the step's test, return the engine's signal.

The provider is the only I/O here (a fake one serves the unit tests). The
running state (failure counters, the carried sequential test) travels in
`status.analysis`, so a restarted operator continues the same test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from controller import stats
from controller.analysis import templates
from controller.analysis.guardrails import (
    Assessment,
    Measurement,
    Outcome,
    applies,
    assess,
    breach_action,
    consecutive_failures,
)
from controller.analysis.provider import MetricError, MetricProvider
from controller.api import Analysis, Decision, Guardrail, Metric, ModelRolloutSpec
from controller.durations import parse_duration
from controller.engine.observations import ABVerdict, AnalysisSignal, AnalysisVerdict

POWER = 0.8
SRM_ALPHA = 0.001
# The smallest mixture scale of an error-rate guardrail's sequential test (an absolute 1% shift).
GUARDRAIL_MDE = 0.01


@dataclass(frozen=True)
class Context:
    model: str
    namespace: str
    stable: str
    candidate: str
    step_index: int
    step_kind: str
    step_elapsed_seconds: float
    weight: int
    now: str


@dataclass
class Result:
    signal: AnalysisSignal
    state: dict[str, Any]
    decisions: list[Decision] = field(default_factory=list)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _since_step(ctx: Context, settle_seconds: float = 0.0) -> str | None:
    """The look-back of a test's sample: from the step's start plus a settling time, to now.

    Right after a weight change, scrapes and the data plane still carry the previous split:
    counting them would make a sample-ratio check fire on our own transition.
    """
    seconds = int(ctx.step_elapsed_seconds - settle_seconds)
    return f"{seconds}s" if seconds >= 1 else None


class Evaluator:
    def __init__(self, spec: ModelRolloutSpec, analysis: Analysis, provider: MetricProvider, ctx: Context) -> None:
        self.spec, self.analysis, self.provider, self.ctx = spec, analysis, provider, ctx

    # --- guardrails -------------------------------------------------------

    def lookback(self) -> str | None:
        """The guardrail window, cut at the step's start: what came before (an earlier split,
        a rolled-back attempt) is not this step's evidence."""
        seconds = int(min(parse_duration(self.analysis.window), self.ctx.step_elapsed_seconds))
        return f"{seconds}s" if seconds >= 1 else None

    def measure(self, guardrail: Guardrail) -> Measurement:
        ctx, window = self.ctx, self.lookback()
        if window is None:
            return Measurement(None)
        try:
            if guardrail.query is not None:
                query = guardrail.query
                return Measurement(
                    self.provider.scalar(templates.render(query, ctx.model, ctx.candidate, ctx.namespace, window)),
                    self.provider.scalar(templates.render(query, ctx.model, ctx.stable, ctx.namespace, window)),
                )
            if guardrail.template == "predictionPSI":
                drift = self.drift()
                return Measurement(None if drift is None else drift.psi)
            if guardrail.template == "errorRate":
                return Measurement(
                    self.provider.scalar(templates.error_rate(ctx.model, ctx.candidate, window)),
                    self.provider.scalar(templates.error_rate(ctx.model, ctx.stable, window)),
                    significantly_worse=self.error_rate_worse(max(GUARDRAIL_MDE, guardrail.max or 0.0)),
                )
            quantile = 0.99 if guardrail.template == "latencyP99" else 0.95
            return Measurement(
                self.provider.scalar(templates.latency_quantile(quantile, ctx.model, ctx.candidate, window)),
                self.provider.scalar(templates.latency_quantile(quantile, ctx.model, ctx.stable, window)),
            )
        except MetricError as error:
            return Measurement(None, error=str(error))

    def error_rate_worse(self, effect_scale: float) -> bool | None:
        """The sequential test since the step began: is the candidate's error rate worse?

        The mixture is scaled to the effects the guardrail exists for (its bound): a small scale
        would make a large, real regression wait for many more samples. Any scale fixed before
        the data keeps the test always valid.
        """
        ctx, since = self.ctx, _since_step(self.ctx)
        if since is None:
            return None
        counts = [
            self.provider.scalar(templates.request_count(ctx.model, version, since, status))
            for version in (ctx.stable, ctx.candidate) for status in ("error", None)
        ]
        stable_errors, stable_total, candidate_errors, candidate_total = (c or 0.0 for c in counts)
        if not stable_total or not candidate_total:
            return None
        result = stats.sequential_proportion_test(
            stable_successes=stable_errors, stable_trials=stable_total,
            candidate_successes=candidate_errors, candidate_trials=candidate_total,
            tau2=stats.mixture_variance(effect_scale), alpha=0.05,
        )
        return bool(result.pvalue <= result.alpha and result.ci_low > 0)

    def drift(self) -> stats.DriftResult | None:
        ctx, window = self.ctx, self.lookback()
        if window is None:
            return None
        stable = self.provider.by_label(templates.prediction_buckets(ctx.model, ctx.stable, window), "le")
        candidate = self.provider.by_label(templates.prediction_buckets(ctx.model, ctx.candidate, window), "le")
        edges = sorted(set(stable) & set(candidate), key=lambda le: math.inf if le == "+Inf" else float(le))
        if len(edges) < 2:
            return None
        result = stats.histogram_drift(
            stats.counts_from_cumulative([stable[le] for le in edges]),
            stats.counts_from_cumulative([candidate[le] for le in edges]),
        )
        return None if result.insufficient_data else result

    # --- abTest -----------------------------------------------------------

    def metric_counts(self, metric: Metric) -> tuple[float, float, float, float] | None:
        ctx = self.ctx
        since = _since_step(ctx, settle_seconds=parse_duration(self.analysis.interval))
        if since is None:
            return None
        values = []
        for version in (ctx.stable, ctx.candidate):
            if metric.template is not None:
                successes, trials = templates.metric_counts(metric.template, ctx.model, version, since)
            else:
                assert metric.successes is not None and metric.trials is not None
                successes = templates.render(metric.successes, ctx.model, version, ctx.namespace, since)
                trials = templates.render(metric.trials, ctx.model, version, ctx.namespace, since)
            values += [self.provider.scalar(successes), self.provider.scalar(trials)]
        if any(value is None for value in values[1::2]):
            return None
        return tuple(v or 0.0 for v in values)  # type: ignore[return-value]


def _metric(analysis: Analysis, name: str | None) -> Metric | None:
    if name is None:
        return None
    for metric in analysis.metrics:
        if metric.name == name:
            return metric
    if name in ("conversion", "success"):
        return Metric(name=name, template=name)
    return None


def evaluate(spec: ModelRolloutSpec, provider: MetricProvider, ctx: Context, previous: dict[str, Any]) -> Result:
    analysis = spec.analysis
    assert analysis is not None
    evaluator = Evaluator(spec, analysis, provider, ctx)
    decisions: list[Decision] = []
    state: dict[str, Any] = {"lastRun": ctx.now, "step": ctx.step_index, "guardrails": {}}
    failing, holding, unmeasured = _guardrails(evaluator, ctx, previous, state, decisions)
    if ctx.step_kind == "shadow" and not any(g.template == "predictionPSI" for g in analysis.guardrails):
        _record_drift(evaluator, state)

    ab_verdict, ab_halt = None, None
    step = spec.strategy.steps[ctx.step_index]
    if step.ab_test is not None and (metric := _metric(analysis, step.ab_test.metric)) is not None:
        try:
            ab_verdict, ab_halt, ab_state, ab_decision = _ab_look(evaluator, metric, ctx, previous)
        except MetricError as error:
            unmeasured.append(f"abTest {metric.name}: {error}")
        else:
            state["abTest"] = ab_state
            if ab_decision is not None:
                decisions.append(ab_decision)

    errors = previous.get("consecutiveErrors", 0) + 1 if unmeasured else 0
    state["consecutiveErrors"] = errors
    if failing:
        signal = AnalysisSignal(AnalysisVerdict.FAIL, "guardrail breached: " + "; ".join(failing), ab_verdict)
    elif ab_halt:
        signal = AnalysisSignal(AnalysisVerdict.HALT, ab_halt, ab_verdict)
    elif unmeasured and errors >= analysis.error_limit:
        signal = AnalysisSignal(AnalysisVerdict.ERROR, f"{errors} analysis runs without data: " + "; ".join(unmeasured))
    elif holding or unmeasured:
        signal = AnalysisSignal(AnalysisVerdict.HOLD, "; ".join(holding + unmeasured), ab_verdict)
    else:
        signal = AnalysisSignal(AnalysisVerdict.PASS, "all guardrails pass", ab_verdict)
    state["verdict"], state["reason"] = signal.verdict, signal.reason
    return Result(signal, state, decisions)


def _guardrails(evaluator: Evaluator, ctx: Context, previous: dict[str, Any], state: dict[str, Any],
                decisions: list[Decision]) -> tuple[list[str], list[str], list[str]]:
    """Judge every guardrail of this step: (failing, holding, unmeasured) reasons."""
    previous_guardrails = previous.get("guardrails", {}) if previous.get("step") == ctx.step_index else {}
    failing: list[str] = []
    holding: list[str] = []
    unmeasured: list[str] = []
    for guardrail in evaluator.analysis.guardrails:
        if not applies(guardrail, ctx.step_kind):
            continue
        measurement = evaluator.measure(guardrail)
        assessment = assess(guardrail, measurement)
        before = previous_guardrails.get(guardrail.name, {}).get("consecutiveFailures", 0)
        failures = consecutive_failures(before, assessment.outcome)
        state["guardrails"][guardrail.name] = {
            "value": _finite(measurement.candidate), "stable": _finite(measurement.stable),
            "verdict": assessment.outcome.value, "reason": assessment.reason, "consecutiveFailures": failures,
        }
        if assessment.outcome in (Outcome.ERROR, Outcome.INCONCLUSIVE):
            unmeasured.append(f"{guardrail.name}: {assessment.reason}")
        elif assessment.outcome == Outcome.FAILED and failures > guardrail.failure_limit:
            action = breach_action(guardrail)
            (failing if action == "rollback" else holding).append(f"{guardrail.name}: {assessment.reason}")
            decisions.append(_guardrail_decision(ctx, guardrail, measurement, assessment, action))
    return failing, holding, unmeasured


def _record_drift(evaluator: Evaluator, state: dict[str, Any]) -> None:
    """Without a drift guardrail the shadow comparison is still shown, never acted on."""
    try:
        drift = evaluator.drift()
    except MetricError:
        return
    if drift is not None:
        state["shadow"] = {"psi": _finite(drift.psi), "ks": _finite(drift.ks_statistic),
                           "jensenShannon": _finite(drift.jensen_shannon)}


def _ab_look(evaluator: Evaluator, metric: Metric, ctx: Context, previous: dict[str, Any]) -> tuple[
        ABVerdict, str | None, dict[str, Any], Decision | None]:
    step = evaluator.spec.strategy.steps[ctx.step_index].ab_test
    assert step is not None
    counts = evaluator.metric_counts(metric)
    if counts is None:
        return ABVerdict.NO_DATA, None, {"metric": metric.name, "verdict": ABVerdict.NO_DATA.value}, None
    stable_s, stable_n, candidate_s, candidate_n = counts
    halt, srm_pvalue = None, None
    # A header cohort adds candidate traffic on purpose: the split is then not the weight.
    if 0 < ctx.weight < 100 and step.header_route is None:
        srm = stats.sample_ratio_mismatch([stable_n, candidate_n], [100 - ctx.weight, ctx.weight],
                                          alpha=SRM_ALPHA)
        srm_pvalue = srm.pvalue if not srm.insufficient_data else None
    if srm_pvalue is not None and srm_pvalue <= SRM_ALPHA:
        halt = (f"sample ratio mismatch: {stable_n:.0f}/{candidate_n:.0f} requests for a "
                f"{100 - ctx.weight}/{ctx.weight} split (p={srm_pvalue:.2g})")
    tau2 = stats.mixture_variance(step.minimum_detectable_effect)
    look = stats.sequential_proportion_test(
        stable_successes=stable_s, stable_trials=stable_n, candidate_successes=candidate_s,
        candidate_trials=candidate_n, tau2=tau2, alpha=step.alpha,
    )
    carried_before = previous.get("abTest", {}).get("carried") if previous.get("step") == ctx.step_index else None
    prior = _restore(carried_before, look) if carried_before else None
    result = stats.carry_forward(prior, look)
    policy = stats.JudgePolicy(alpha=step.alpha, minimum_detectable_effect=step.minimum_detectable_effect,
                               higher_is_better=metric.higher_is_better)
    verdict = stats.judge_sequential(result, policy)
    baseline = min(max(stable_s / stable_n if stable_n else 0.5, 0.001), 0.999)
    needed = stats.samples_per_arm_for_proportions(baseline, step.minimum_detectable_effect,
                                                   alpha=step.alpha, power=POWER)
    state = {
        "metric": metric.name, "verdict": verdict.value,
        "stableRate": _finite(stable_s / stable_n if stable_n else None),
        "candidateRate": _finite(candidate_s / candidate_n if candidate_n else None),
        "samples": int(min(stable_n, candidate_n)), "samplesNeeded": needed,
        "progress": round(stats.progress(min(stable_n, candidate_n), needed), 4),
        "pValue": _finite(result.pvalue), "effect": _finite(result.effect),
        "ciLow": _finite(result.ci_low), "ciHigh": _finite(result.ci_high),
        "srmPValue": _finite(srm_pvalue),
        "carried": {"pvalue": result.pvalue, "ci_low": result.ci_low, "ci_high": result.ci_high}
        if not result.insufficient_data and math.isfinite(result.ci_low) and math.isfinite(result.ci_high) else None,
    }
    decision = Decision(
        step=ctx.step_index, test="mSPRT two-proportion", verdict=verdict.value, at=ctx.now,
        statistic=_finite(result.statistic), p_value=_finite(result.pvalue), effect=_finite(result.effect),
        ci=[v for v in (_finite(result.ci_low), _finite(result.ci_high)) if v is not None] or None,
        samples=int(stable_n + candidate_n), detail=f"{metric.name}: {needed} per arm needed for the MDE",
    )
    return ABVerdict(verdict.value), halt, state, decision


def _restore(carried: dict[str, float], look: stats.SequentialResult) -> stats.SequentialResult:
    """The running test as stored: only what carry_forward folds (p-value and sequence bounds) matters."""
    return replace(look, pvalue=carried["pvalue"], ci_low=carried["ci_low"], ci_high=carried["ci_high"])


def _guardrail_decision(ctx: Context, guardrail: Guardrail, measurement: Measurement, assessment: Assessment,
                        action: str) -> Decision:
    return Decision(
        step=ctx.step_index, test=f"guardrail {guardrail.name}", verdict=f"breach: {action}", at=ctx.now,
        statistic=_finite(measurement.candidate), effect=None if measurement.stable is None or measurement.candidate
        is None else _finite(measurement.candidate - measurement.stable), detail=assessment.reason,
    )
