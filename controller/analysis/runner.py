"""When and with what the reconciler runs an analysis: every `analysis.interval` of a running step.

Between runs the last verdict stands, so every reconcile hands the engine the same signal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller import api
from controller.analysis.addresses import AddressPolicy
from controller.analysis.credentials import CredentialsUnavailable, SecretView, check_binding
from controller.analysis.prometheus import Credentials, PrometheusPool, PrometheusProvider
from controller.durations import parse_duration
from controller.engine.observations import AnalysisSignal
from controller.timestamps import format_timestamp, parse_timestamp

# One run's queries share this much of its interval, and never more than the cap: a hung
# Prometheus delays nothing else for longer.
DEADLINE_SHARE = 0.8
DEADLINE_CAP_SECONDS = 15.0


NO_PROMETHEUS = ("no Prometheus to measure with: set analysis.prometheus, or give the operator one "
                 "(modelrollout run --prometheus-address; the chart's prometheus.address)")


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


@dataclass
class Run:
    signal: AnalysisSignal | None = None
    state: api.AnalysisStatus | None = None
    decisions: list[api.Decision] = field(default_factory=list)
    # When the next run is due: the engine wakes the rollout then.
    next_at: datetime | None = None


def analyse(io: AnalysisIO, body: dict[str, Any], spec: api.ModelRolloutSpec,
            status: api.ModelRolloutStatus, revision: str, now: datetime, may_query: bool = True) -> Run:
    """The analysis signal for this reconcile: a fresh run when one is due and `may_query`,
    else the last run's verdict."""
    analysis = spec.analysis
    step = status.current_step
    running = (
        analysis is not None
        and status.candidate_revision == revision and status.stable_revision is not None
        and status.phase in (api.Phase.PROGRESSING, api.Phase.PAUSED)
        and status.step_started_at is not None and status.candidate_ready
        and step < len(spec.strategy.steps)
    )
    if not running:
        return Run()
    assert analysis is not None and status.step_started_at is not None
    assert status.stable_revision is not None
    interval = parse_duration(analysis.interval)
    # Only this attempt at this step counts: a retry restarts the step and its evidence.
    previous = current_analysis(status)
    started = parse_timestamp(status.step_started_at)
    if previous is not None:
        due_at = parse_timestamp(previous.last_run) + timedelta(seconds=interval)
        if now < due_at or not may_query:
            ab = previous.ab_test.verdict if previous.ab_test and spec.strategy.steps[step].ab_test else None
            return Run(AnalysisSignal(previous.verdict, previous.reason, ab), next_at=due_at)
    if not may_query:
        # No verdict yet for this step: hold, and run it right after the action.
        return Run(AnalysisSignal(api.AnalysisVerdict.HOLD, "the step's first analysis is pending"), next_at=now)
    meta = body["metadata"]
    next_at = now + timedelta(seconds=interval)
    if analysis.prometheus is None and io.default_prometheus is None and not (
            analysis.guardrails or spec.strategy.steps[step].ab_test):
        return Run()  # Nothing to measure at this step, and nothing to measure it with.
    try:
        _check_custom_queries(io, analysis)
        address, credentials = prometheus_for(io, analysis.prometheus, meta["namespace"])
    except CredentialsUnavailable as error:
        return Run(AnalysisSignal(api.AnalysisVerdict.ERROR, str(error)), next_at=next_at)
    # numpy and scipy cost tens of MB: loaded by the first analysis that runs,
    # never by an operator whose rollouts have none.
    from controller.analysis.evaluate import Context, evaluate

    ctx = Context(
        model=spec.model, namespace=meta["namespace"], rollout=meta["name"], stable=status.stable_revision,
        candidate=revision,
        step_index=step, step_kind=spec.strategy.steps[step].kind, step_started_at=status.step_started_at,
        step_elapsed_seconds=(now - started).total_seconds(), weight=status.canary_weight, now=format_timestamp(now),
        interval_seconds=interval, step_seconds=spec.step_seconds(step),
        since_last_seconds=(now - parse_timestamp(previous.last_run)).total_seconds() if previous else interval,
        expected_share=_expected_share(spec, step, status.canary_weight),
    )
    began = time.monotonic()
    deadline = began + min(DEADLINE_CAP_SECONDS, max(1.0, interval * DEADLINE_SHARE))
    provider = PrometheusProvider(io.pool, address, credentials, deadline, io.interrupted)
    result = evaluate(spec, provider, ctx, previous)
    # How long the queries and judgements took: the analysis share of a rollback's latency.
    took_ms = round((time.monotonic() - began) * 1000, 1)
    state = result.state.model_copy(update={"duration_ms": took_ms})
    return Run(result.signal, state, result.decisions, next_at)


CUSTOM_QUERIES_REFUSED = ("the operator's own Prometheus runs only the built-in templates: a query guardrail or a "
                          "metric's successes/trials query needs analysis.prometheus (or the installer's leave, the "
                          "chart's prometheus.allowCustomQueries)")


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


def provider_for(io: AnalysisIO, spec: api.ModelRolloutSpec, namespace: str, seconds: float) -> PrometheusProvider:
    """The analysis' Prometheus (or the operator's own), answering within `seconds`; CredentialsUnavailable
    when it may not be asked."""
    address, credentials = prometheus_for(io, spec.analysis.prometheus if spec.analysis else None, namespace)
    return PrometheusProvider(io.pool, address, credentials, time.monotonic() + seconds, io.interrupted)


def current_analysis(status: api.ModelRolloutStatus) -> api.AnalysisStatus | None:
    """status.analysis when it belongs to the current attempt at the current step, else None."""
    analysis = status.analysis
    if analysis is None or analysis.step != status.current_step or analysis.step_started_at != status.step_started_at:
        return None
    return analysis


def _expected_share(spec: api.ModelRolloutSpec, step: int, weight: int) -> float | None:
    """Where requests should land, for the sample-ratio check of an abTest step: the route weight.

    Not with a header cohort (it adds candidate traffic on purpose) nor with replicas routing
    (its split is the replica ratio, an approximation of the weight)."""
    ab = spec.strategy.steps[step].ab_test
    if ab is None or ab.header_route is not None or spec.traffic_routing.replicas is not None:
        return None
    return weight / 100 if 0 < weight < 100 else None
