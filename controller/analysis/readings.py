"""What an analysis look reads, as typed keys, and what it read: measurements, never PromQL.

`needs` names the readings a look will judge; a provider (`controller.measure`) answers each
with a value or the MetricError that stopped it; `judge` folds the answers. A new kind of reading
is a key here, its answer in the provider, and the judge function that reads it.

Pure and light: the engine plans with it on every reconcile, so it imports no numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from controller import api
from controller.durations import parse_duration
from controller.profiles import HISTOGRAM_TEMPLATES, profile

# When the window holds too few stable requests to see the latency tail, the slow-request bound
# is placed from this much of the stable's past instead.
TAIL_LOOKBACK = "10m"
# Right after a weight change, scrapes still carry the previous split.
SRM_SETTLE_SECONDS = 30.0


class MetricError(RuntimeError):
    """The provider could not answer (unreachable, bad query): an Error outcome, never a pass."""


@dataclass(frozen=True)
class RequestCounts:
    """A version's requests so far, by outcome: counter totals."""

    version: str


@dataclass(frozen=True)
class Conversions:
    """A version's conversions so far: a counter total."""

    version: str


@dataclass(frozen=True)
class Buckets:
    """A histogram of the profile's `series` (a Profile field): requests at or under each bound,
    over `window`, or so far when `window` is None."""

    series: str
    version: str
    window: str | None = None


@dataclass(frozen=True)
class Quantile:
    q: float
    series: str
    version: str
    window: str


@dataclass(frozen=True)
class ErrorRate:
    version: str
    window: str


@dataclass(frozen=True)
class Gauge:
    """A gauge guardrail's value (`template`), over `window`."""

    template: str
    version: str
    window: str


@dataclass(frozen=True)
class Query:
    """A rollout's own PromQL, its placeholders filled for `version` and `window`."""

    text: str
    version: str
    window: str


@dataclass(frozen=True)
class AnalysisSignal:
    verdict: api.AnalysisVerdict
    reason: str = ""
    # The abTest's verdict so far; None while it has none.
    ab_verdict: api.Verdict | None = None
    # A shadow step's comparison (compare.passWhen: noWorse) has shown what it waits for: the step may end.
    step_passed: bool = False


@dataclass(frozen=True)
class WarmupReading:
    """The candidate's latency over its recent warm-up requests; `error` says why nothing was read."""

    requests: float = 0.0
    latency_p95: float | None = None  # seconds
    error: str | None = None


@dataclass(frozen=True)
class Comparisons:
    """The rollout's comparator's counter totals (a shadow step with compare), by part:
    `<metric>|<cell>|<side>|<reason>|<le>|<field>`, the labels a metric lacks empty."""


Reading = RequestCounts | Conversions | Buckets | Quantile | ErrorRate | Gauge | Query | Comparisons


@dataclass(frozen=True)
class Outcomes:
    ok: float = 0.0
    error: float = 0.0
    # When the arm's pods were last scraped (Unix seconds, the mean over its series); None when unknown.
    sampled_at: float | None = None


Value = float | None | Outcomes | dict[float, float] | dict[str, float]


@dataclass(frozen=True)
class Measurements:
    """The provider's answers, keyed by reading; an answer may be the MetricError that stopped it."""

    values: dict[Reading, Value | MetricError] = field(default_factory=dict)

    def _get(self, key: Reading) -> Value:
        value = self.values[key]  # a KeyError is a planning bug: `needs` missed a reading
        if isinstance(value, MetricError):
            raise value
        return value

    def scalar(self, key: Quantile | ErrorRate | Gauge | Query | Conversions) -> float | None:
        value = self._get(key)
        assert value is None or isinstance(value, int | float)
        return None if value is None else float(value)

    def outcomes(self, key: RequestCounts) -> Outcomes:
        value = self._get(key)
        assert isinstance(value, Outcomes)
        return value

    def buckets(self, key: Buckets) -> dict[float, float]:
        value = self._get(key)
        assert isinstance(value, dict)
        return value  # type: ignore[return-value]

    def comparisons(self) -> dict[str, float]:
        value = self._get(Comparisons())
        assert isinstance(value, dict)
        return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Look:
    """One analysis look at the current step: who is compared, and when."""

    stable: str
    candidate: str
    step_index: int
    step_kind: str
    step_started_at: str
    step_elapsed_seconds: float
    weight: int
    now: str
    interval_seconds: float = 10.0
    # Since the last look (the interval, at the first): what a {{window}} metric query counts.
    since_last_seconds: float = 10.0
    step_seconds: float | None = None
    # The candidate's expected share of requests when the sample-ratio check applies, else None.
    expected_share: float | None = None
    # The step whose comparison this look reads: this one, or an earlier one carried on (`compared_step`).
    compared_step: int | None = None

    def window(self, analysis: api.Analysis) -> str | None:
        """The guardrail window, cut at the step's start: what came before is not this step's evidence."""
        seconds = int(min(parse_duration(analysis.window), self.step_elapsed_seconds))
        return f"{seconds}s" if seconds >= 1 else None

    def since_last_look(self) -> str:
        return f"{max(1, round(self.since_last_seconds))}s"

    def sample_ratio_due(self) -> bool:
        settle = max(SRM_SETTLE_SECONDS, 2 * self.interval_seconds)
        return self.expected_share is not None and self.step_elapsed_seconds >= settle


def applying(analysis: api.Analysis, look: Look) -> list[api.Guardrail]:
    return [g for g in analysis.guardrails if g.during is None or look.step_kind in g.during]


def histogram_series(guardrail: api.Guardrail) -> str:
    return HISTOGRAM_TEMPLATES[guardrail.template or ""][0]


def metric_of(analysis: api.Analysis, name: str | None) -> api.Metric | None:
    if name is None:
        return None
    for metric in analysis.metrics:
        if metric.name == name:
            return metric
    return api.Metric(name=name, template=name) if name in ("conversion", "success") else None


def shows_shadow(analysis: api.Analysis, look: Look) -> bool:
    """A shadow step shows its comparison even without a drift guardrail (never acted on)."""
    return look.step_kind == "shadow" and not any(g.template == "predictionPSI" for g in analysis.guardrails)


def needs(spec: api.ModelRolloutSpec, look: Look, previous: api.AnalysisStatus | None) -> frozenset[Reading]:
    """Every reading `judge` will consult at this look."""
    analysis = spec.analysis
    assert analysis is not None
    wanted: set[Reading] = set()
    for guardrail in applying(analysis, look):
        before = previous.guardrails.get(guardrail.name) if previous else None
        wanted |= _guardrail_needs(analysis, guardrail, look, before)
    if shows_shadow(analysis, look):
        wanted |= _drift_needs(analysis, look)
    ab = spec.strategy.steps[look.step_index].ab_test
    metric = metric_of(analysis, ab.metric) if ab is not None else None
    if metric is not None:
        wanted |= _metric_needs(metric, look)
    if look.sample_ratio_due():
        wanted.update(RequestCounts(version) for version in (look.stable, look.candidate))
    if compare_of(spec, look) is not None:
        wanted.add(Comparisons())
    return frozenset(wanted)


def compare_of(spec: api.ModelRolloutSpec, look: Look) -> api.Compare | None:
    """The compare this look reads: its own step's, or an earlier step's carried on."""
    if look.compared_step is None:
        return None
    shadow = spec.strategy.steps[look.compared_step].shadow
    return shadow.compare if shadow is not None else None


def compared_step(spec: api.ModelRolloutSpec, step: int) -> int | None:
    """The step whose comparison a look at `step` reads: `step` itself when it compares answers; else the
    last earlier step that compared, when its compare takes feedback (labels that arrive after it ended
    still count toward it, while the rollout goes on); else None."""
    for index in range(min(step, len(spec.strategy.steps) - 1), -1, -1):
        shadow = spec.strategy.steps[index].shadow
        if shadow is not None and shadow.compare is not None:
            return index if index == step or shadow.compare.takes_feedback else None
    return None


def _guardrail_needs(analysis: api.Analysis, guardrail: api.Guardrail, look: Look,
                     before: api.GuardrailStatus | None) -> set[Reading]:
    arms, window = (look.stable, look.candidate), look.window(analysis)
    if guardrail.template == "errorRate":
        wanted: set[Reading] = {RequestCounts(version) for version in arms}
        if window is not None:
            wanted.update(ErrorRate(version, window) for version in arms)
        return wanted
    if guardrail.template in HISTOGRAM_TEMPLATES:
        series, q = HISTOGRAM_TEMPLATES[guardrail.template]
        wanted = {Buckets(series, version) for version in arms}
        if window is not None:
            wanted.update(Quantile(q, series, version, window) for version in arms)
        if before is None or not before.slow_above:
            # The slow-request bound, from the stable's recent past; fixed once placed.
            wanted.update(Buckets(series, look.stable, lookback) for lookback in (analysis.window, TAIL_LOOKBACK))
        return wanted
    if window is None:
        return set()
    if guardrail.template == "predictionPSI":
        return _drift_needs(analysis, look)
    if guardrail.template is not None:
        return {Gauge(guardrail.template, version, window) for version in arms}
    assert guardrail.query is not None
    return {Query(guardrail.query, version, window) for version in arms}


def _drift_needs(analysis: api.Analysis, look: Look) -> set[Reading]:
    window = look.window(analysis)
    if window is None or profile(analysis.profile).predictions is None:
        return set()
    return {Buckets("predictions", version, window) for version in (look.stable, look.candidate)}


def _metric_needs(metric: api.Metric, look: Look) -> set[Reading]:
    arms = (look.stable, look.candidate)
    if metric.template is not None:
        wanted: set[Reading] = {RequestCounts(version) for version in arms}
        if metric.template == "conversion":
            wanted.update(Conversions(version) for version in arms)
        return wanted
    assert metric.successes is not None and metric.trials is not None
    # A query with {{window}} counts since the last look; one without returns the counter's total.
    return {Query(text, version, look.since_last_look()) for text in (metric.successes, metric.trials)
            for version in arms}


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
