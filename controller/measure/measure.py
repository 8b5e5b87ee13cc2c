"""The one measuring port: a Plan in, Readings out. All of a reconcile's metric I/O is here.

Each planned reading becomes PromQL on the rollout's profile (`templates`) and one query to the
analysis' Prometheus (or the operator's own), within the look's deadline. What cannot be read is
a reading too, with its reason, and never a pass; the engine judges it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller import api
from controller.analysis.readings import (
    Buckets,
    Comparisons,
    Conversions,
    ErrorRate,
    Gauge,
    Measurements,
    MetricError,
    Outcomes,
    Quantile,
    Query,
    Reading,
    RequestCounts,
    Value,
    WarmupReading,
)
from controller.durations import parse_duration
from controller.engine.decide import AnalysisReadings, CostReadings, Readings
from controller.engine.plan import AnalysisPlan, Plan, WarmupPlan
from controller.measure import templates
from controller.measure.addresses import AddressPolicy
from controller.measure.credentials import CredentialsUnavailable, SecretView, check_binding
from controller.measure.prometheus import (
    AnalysisInterrupted,
    Credentials,
    PrometheusPool,
    PrometheusProvider,
    SharedAnswers,
)
from controller.profiles import GAUGE_TEMPLATES, Backend, Profile, Series, profile

# The warm-up and the cost each read within this; a look reads within its plan's deadline.
READ_DEADLINE_SECONDS = 5.0
WARMUP_QUANTILE = 0.95
# A look reads the fleet's shared answers at most this share of its interval old: two evaluations
# of a template per interval, whatever the number of rollouts.
SHARED_AGE_SHARE = 0.5
# The cost is figured once a minute; its request totals may be a shared answer this old.
COST_ANSWER_AGE_SECONDS = 10.0

NO_PROMETHEUS = ("no Prometheus to measure with: set analysis.prometheus, or give the operator one "
                 "(modelrollout run --prometheus-address; the chart's prometheus.address)")
CUSTOM_QUERIES_REFUSED = ("the operator's own Prometheus runs only the built-in templates: a query guardrail or a "
                          "metric's successes/trials query needs analysis.prometheus (or the installer's leave, the "
                          "chart's prometheus.allowCustomQueries)")


@dataclass(frozen=True)
class DefaultPrometheus:
    """The operator's own Prometheus, for rollouts whose analysis names none. Its credentials are the
    installer's (a mounted Secret), so no Secret annotation binds them: the flags are the binding."""

    address: str
    credentials: Credentials = field(default_factory=Credentials)
    # Whether a rollout's own PromQL (query guardrails, metrics) may run here, with these credentials.
    custom_queries: bool = False


@dataclass(frozen=True)
class AnalysisIO:
    pool: PrometheusPool
    # (namespace, name) -> the Secret's data and annotations; raises CredentialsUnavailable.
    read_secret: Callable[[str, str], SecretView]
    interrupted: Callable[[], bool] = lambda: False
    default_prometheus: DefaultPrometheus | None = None
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    # The process's answers shared by rollouts; None: every rollout queries for itself.
    shared: SharedAnswers | None = None


@dataclass(frozen=True)
class RolloutRef:
    """Whose metrics: the rollout's model, namespace and name (its pods are `<rollout>-<revision>-...`)."""

    model: str
    namespace: str
    name: str


class Measurer:
    """Reads what a Plan names for one rollout."""

    def __init__(self, io: AnalysisIO, spec: api.ModelRolloutSpec, rollout: RolloutRef,
                 capacity_shortfall: Callable[[int], str | None], gpus: Callable[[str], int]) -> None:
        self.io, self.spec, self.rollout = io, spec, rollout
        self.capacity_shortfall, self.gpus = capacity_shortfall, gpus
        analysis = spec.analysis
        self.profile = profile(analysis.profile if analysis else None, analysis.gateway_profile if analysis else None)
        # The server's own: the cost counts what the pods served, whatever reached them.
        self.server = profile(analysis.profile if analysis else None)
        # Through which backend of the gateway each version is reached now (a gateway profile's arms).
        self._backends: dict[str, Backend] = {}

    def measure(self, plan: Plan) -> Readings:
        """Raises AnalysisInterrupted when a manual action arrives during a look: the pass starts over."""
        self._backends = self._reached(plan)
        return Readings(
            analysis=self._analysis(plan.analysis) if plan.analysis else None,
            warmup=self._warmup(plan.warmup) if plan.warmup else None,
            cost=self._cost(plan.cost) if plan.cost else None,
            capacity_shortfall=self.capacity_shortfall(plan.capacity) if plan.capacity is not None else None,
        )

    def _reached(self, plan: Plan) -> dict[str, Backend]:
        """The stable through `<name>-stable`; the candidate through `<name>-candidate`, or while it takes no
        live request (a shadow step, the warm-up), through the route's mirror where the gateway counts
        mirrored copies apart."""
        namespace, name = self.rollout.namespace, self.rollout.name
        routing = self.spec.traffic_routing.gateway_api
        gateway = self.profile.gateway

        def candidate(mirrored: bool) -> Backend:
            if mirrored and routing is not None and gateway is not None and gateway.mirrors_apart:
                return Backend(namespace, routing.http_route, mirror=True)
            return Backend(namespace, f"{name}-candidate")

        reached: dict[str, Backend] = {}
        if plan.analysis is not None:
            look = plan.analysis.look
            reached[look.candidate] = candidate(look.weight == 0)
            reached[look.stable] = Backend(namespace, f"{name}-stable")
        if plan.warmup is not None:
            reached[plan.warmup.revision] = candidate(True)
        return reached

    def _provider(self, seconds: float) -> PrometheusProvider:
        """The analysis' Prometheus (or the operator's own), answering within `seconds`; CredentialsUnavailable
        when it may not be asked."""
        address, credentials = prometheus_for(self.io, self.spec.analysis.prometheus if self.spec.analysis else None,
                                              self.rollout.namespace)
        return PrometheusProvider(self.io.pool, address, credentials, time.monotonic() + seconds, self.io.interrupted,
                                  self.io.shared)

    def _analysis(self, plan: AnalysisPlan) -> AnalysisReadings:
        analysis = self.spec.analysis
        assert analysis is not None
        if analysis.prometheus is None and self.io.default_prometheus is None and not plan.requires_prometheus:
            return AnalysisReadings()
        began = time.monotonic()
        try:
            _check_custom_queries(self.io, analysis)
            provider = self._provider(plan.deadline_seconds)
        except CredentialsUnavailable as error:
            return AnalysisReadings(error=str(error))
        # Half an interval: a rollout's next look, an interval on, never finds the answer it read last
        # (it would count nothing). None from before the step either: its weight was another.
        max_age = min(plan.look.interval_seconds * SHARED_AGE_SHARE, plan.look.step_elapsed_seconds)
        # A window cut at a young step's start is this rollout's alone (a query per second of step age):
        # read for its own arm, not as the fleet's answer, which would cost every arm's series each time.
        cut = plan.look.window(analysis) if plan.look.step_elapsed_seconds < parse_duration(analysis.window) else None
        readings = sorted(plan.readings, key=repr)
        ages = {reading: None if cut is not None and getattr(reading, "window", None) == cut else max_age
                for reading in readings}
        starter = provider.starter()
        for reading in readings:
            self._read(starter, reading, ages[reading])
        values: dict[Reading, Value | MetricError] = {}
        for reading in readings:
            try:
                values[reading] = self._read(provider, reading, ages[reading])
            except MetricError as error:
                values[reading] = error
        took_ms = round((time.monotonic() - began) * 1000, 1)
        return AnalysisReadings(Measurements(values), took_ms=took_ms)

    def _read(self, provider: PrometheusProvider, reading: Reading, max_age: float | None,
              chosen: Profile | None = None) -> Value:
        """With `max_age`, a built-in template is read from the fleet's shared answer (`templates.FLEET`),
        at most that old; without, from this rollout's own query. `chosen`: another profile than the analysis'."""
        chosen = chosen or self.profile
        version = getattr(reading, "version", "")
        backend = self._backends.get(version, Backend(self.rollout.namespace, f"{self.rollout.name}-candidate"))
        arm = templates.Arm(self.rollout.model, version, backend)
        scope = templates.FLEET if max_age is not None else arm

        def grouped(query: str, grouping: templates.Grouping, part: str | None) -> dict[str, float]:
            return provider.grouped(query, grouping.labels, part, max_age).get(grouping.key(arm), {})

        match reading:
            case Comparisons():
                # Always the fleet's answer: one query a look, whatever the number of rollouts.
                answer = provider.grouped(templates.COMPARISONS, ("modelrollout",), "part",
                                          max_age if max_age is not None else 0.0)
                return answer.get((f"{self.rollout.namespace}/{self.rollout.name}",), {})
            case RequestCounts():
                totals = grouped(templates.request_totals(chosen, scope), templates.grouping(chosen), "part")
                counted = templates.outcomes(chosen, totals)
                return Outcomes(ok=counted["ok"], error=counted["error"], sampled_at=totals.get("time"))
            case Buckets(series=name, window=window):
                series = self._series(name, chosen)
                query = (templates.bucket_totals(chosen, series, scope) if window is None
                         else templates.buckets(chosen, series, scope, window))
                unit = (chosen.gateway.latency_seconds_per_unit
                        if chosen.gateway is not None and series == chosen.gateway.latency else 1.0)
                return _bounds(grouped(query, templates.grouping(chosen, templates.latency_kind(chosen, series)),
                                       "le"), unit)
            case Query(text=text, window=window):
                return provider.scalar(templates.render(text, self.rollout.model, reading.version,
                                                        self.rollout.namespace, window))
            case Gauge(template="gpuMemoryUsage"):
                pods = provider.grouped(templates.GPU_MEMORY_BY_POD, ("namespace", "pod"), None, max_age)
                prefix = f"{self.rollout.name}-{reading.version}-"
                used = [value[""] for (namespace, pod), value in pods.items()
                        if namespace == self.rollout.namespace and pod.startswith(prefix)]
                return max(used, default=None)
        query, template = self._scalar_query(chosen, reading, scope)
        return grouped(query, templates.grouping(chosen, template), None).get("")

    def _scalar_query(self, chosen: Profile, reading: Reading, scope: templates.Arm | None) -> tuple[str, str]:
        """A built-in template's query, and the template kind its series are labelled as."""
        match reading:
            case Conversions():
                return templates.conversion_total(chosen, scope), templates.CONVERSIONS
            case Quantile(q=q, series=name, window=window):
                series = self._series(name, chosen)
                return (templates.quantile(q, chosen, series, scope, window),
                        templates.latency_kind(chosen, series))
            case ErrorRate(window=window):
                return templates.error_rate(chosen, scope, window), "requests"
            case Gauge(template=template, window=window):
                series = self._series(GAUGE_TEMPLATES[template], chosen)
                if template == "tokensPerSecond":
                    return templates.decode_speed(chosen, series, scope, window), "gauges"
                return templates.gauge_mean(chosen, series, scope, window), "gauges"
        raise AssertionError(f"no query for {reading!r}")

    def _series(self, name: str, chosen: Profile | None = None) -> Series:
        series: Series | None = getattr(chosen or self.profile, name)
        assert series is not None, "admission rejects a template the profile does not export"
        return series

    def _warmup(self, plan: WarmupPlan) -> WarmupReading | None:
        """The candidate's requests and p95 over its warm-up so far; None when a manual action cut it short."""
        if plan.seconds < 1:
            return WarmupReading(requests=0.0)
        assert self.profile.latency is not None, "admission refuses a warm-up on a profile without a latency histogram"
        look_back = f"{plan.seconds}s"
        try:
            provider = self._provider(READ_DEADLINE_SECONDS)
            buckets = self._read(provider, Buckets("latency", plan.revision, look_back), None)
            p95 = self._read(provider, Quantile(WARMUP_QUANTILE, "latency", plan.revision, look_back), None)
        except (CredentialsUnavailable, MetricError) as error:
            return WarmupReading(error=str(error))
        except AnalysisInterrupted:
            return None
        assert isinstance(buckets, dict) and (p95 is None or isinstance(p95, float))
        requests = float(buckets.get(math.inf, 0.0))  # type: ignore[call-overload]
        return WarmupReading(requests=requests,
                             latency_p95=p95 if p95 is not None and math.isfinite(p95) else None)

    def _cost(self, revisions: tuple[str, ...]) -> CostReadings:
        """Each revision's request counter total, and the GPUs serving it."""
        gpus = {revision: self.gpus(revision) for revision in revisions}
        try:
            provider = self._provider(READ_DEADLINE_SECONDS)
            requests = {revision: _requests(self._read(provider, RequestCounts(revision), COST_ANSWER_AGE_SECONDS,
                                                       self.server))
                        for revision in revisions}
        except (CredentialsUnavailable, MetricError) as error:
            return CostReadings(gpus=gpus, error=str(error))
        except AnalysisInterrupted:
            return CostReadings(gpus=gpus, interrupted=True)
        return CostReadings(requests, gpus)


def _bounds(by_le: dict[str, float], seconds_per_unit: float = 1.0) -> dict[float, float]:
    """Histogram buckets keyed by their upper bound in seconds (`+Inf` is infinity)."""
    bounds = {}
    for le, count in by_le.items():
        try:
            bounds[float(le) * seconds_per_unit] = count
        except ValueError:
            bounds[math.inf] = count
    return bounds


def _check_custom_queries(io: AnalysisIO, analysis: api.Analysis) -> None:
    """A rollout's own PromQL never runs with the operator's credentials unless the installer says so."""
    if analysis.prometheus is not None or io.default_prometheus is None or io.default_prometheus.custom_queries:
        return
    if any(g.query for g in analysis.guardrails) or any(m.successes for m in analysis.metrics):
        raise CredentialsUnavailable(CUSTOM_QUERIES_REFUSED)


def prometheus_for(io: AnalysisIO, source: api.PrometheusSource | None, namespace: str) -> tuple[str, Credentials]:
    """Where this analysis queries, and with what; CredentialsUnavailable when it may not, or has nowhere."""
    if source is None:
        if io.default_prometheus is None:
            raise CredentialsUnavailable(NO_PROMETHEUS)
        return io.default_prometheus.address, io.default_prometheus.credentials
    io.addresses.check(source.address)
    if source.secret_ref is None:
        return source.address, Credentials()
    secret = io.read_secret(namespace, source.secret_ref.name)
    check_binding(source.address, secret, f"{namespace}/{source.secret_ref.name}")
    return source.address, Credentials.from_secret(secret.data)


def _requests(counted: Value) -> float | None:
    """All of an arm's requests so far; None when it has no counted request at all."""
    assert isinstance(counted, Outcomes)
    return counted.ok + counted.error if counted.sampled_at is not None else None
