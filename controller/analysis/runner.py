"""When and with what the reconciler runs an analysis: every `analysis.interval` of a running step.

Between runs the last verdict stands, so every reconcile hands the engine the same signal.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client

from controller import api
from controller.analysis.evaluate import Context, evaluate
from controller.analysis.prometheus import PrometheusProvider, connect
from controller.durations import parse_duration
from controller.engine.observations import AnalysisSignal
from controller.timestamps import format_timestamp, parse_timestamp

_PROVIDERS: dict[tuple[str, str, str], PrometheusProvider] = {}


@dataclass
class Run:
    signal: AnalysisSignal | None = None
    state: dict[str, Any] | None = None
    decisions: list[api.Decision] = field(default_factory=list)


def _provider(api_client: client.ApiClient, namespace: str, source: api.PrometheusSource) -> PrometheusProvider:
    secret: dict[str, str] = {}
    version = ""
    if source.secret_ref is not None:
        found = client.CoreV1Api(api_client).read_namespaced_secret(source.secret_ref.name, namespace)
        version = (found.metadata.resource_version if found.metadata else None) or ""
        secret = {key: base64.b64decode(value).decode() for key, value in (found.data or {}).items()}
    key = (source.address, f"{namespace}/{source.secret_ref.name if source.secret_ref else ''}", version or "")
    if key not in _PROVIDERS:
        _PROVIDERS[key] = connect(source.address, secret)
    return _PROVIDERS[key]


def analyse(api_client: client.ApiClient, body: dict[str, Any], spec: api.ModelRolloutSpec,
            status: api.ModelRolloutStatus, revision: str, now: datetime) -> Run:
    analysis = spec.analysis
    step = status.current_step
    running = (
        analysis is not None and analysis.prometheus is not None
        and status.candidate_revision == revision and status.stable_revision is not None
        and status.phase in (api.Phase.PROGRESSING, api.Phase.PAUSED)
        and status.step_started_at is not None and status.candidate_ready
        and step < len(spec.strategy.steps)
    )
    if not running:
        return Run()
    assert analysis is not None and analysis.prometheus is not None and status.step_started_at is not None
    assert status.stable_revision is not None
    # Only this attempt at this step counts: a retry restarts the step and its evidence.
    previous = status.analysis if (status.analysis or {}).get("stepStartedAt") == status.step_started_at else {}
    started = parse_timestamp(status.step_started_at)
    last = previous.get("lastRun")
    due = (
        previous.get("step") != step or last is None
        or (now - parse_timestamp(last)).total_seconds()
        >= parse_duration(analysis.interval)
    )
    if not due:
        ab = previous.get("abTest", {}).get("verdict") if spec.strategy.steps[step].ab_test else None
        return Run(AnalysisSignal(previous.get("verdict", "hold"), previous.get("reason", ""), ab))
    meta = body["metadata"]
    ctx = Context(
        model=spec.model, namespace=meta["namespace"], stable=status.stable_revision, candidate=revision,
        step_index=step, step_kind=spec.strategy.steps[step].kind,
        step_elapsed_seconds=(now - started).total_seconds(), weight=status.canary_weight, now=format_timestamp(now),
    )
    provider = _provider(api_client, meta["namespace"], analysis.prometheus)
    began = time.perf_counter()
    result = evaluate(spec, provider, ctx, previous)
    # How long the queries and judgements took: the analysis share of a rollback's latency.
    took_ms = round((time.perf_counter() - began) * 1000, 1)
    state = {**result.state, "stepStartedAt": status.step_started_at, "durationMs": took_ms}
    return Run(result.signal, state, result.decisions)
