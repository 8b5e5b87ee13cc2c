"""The candidate's latency over its warm-up requests, read from its latency histogram in Prometheus.

Read on every reconcile of a warm-up (the engine asks again every few seconds), over the analysis
window cut at the warm-up's start: what the candidate answered before, if anything, is not a warm-up
request. The engine compares the reading with strategy.warmup; a failed read is a reading too, with
its reason, and never a pass.

Why a bound and not one of the sequential tests: the gate compares the candidate with a number the
user chose, not with the stable, and decides neither a promotion nor a verdict on the model. Passing
only lets the first step start, whose guardrails are the tests; failing needs every reading over
the whole timeout (one every few seconds) to be above the bound, as a passed gate stays passed.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from controller import api
from controller.analysis import templates
from controller.analysis.credentials import CredentialsUnavailable
from controller.analysis.prometheus import AnalysisInterrupted
from controller.analysis.provider import MetricError
from controller.analysis.runner import AnalysisIO, provider_for
from controller.durations import parse_duration
from controller.engine.observations import WarmupReading
from controller.profiles import profile
from controller.timestamps import parse_timestamp

DEADLINE_SECONDS = 5.0
QUANTILE = 0.95
DEFAULT_WINDOW = "1m"


def read_warmup(io: AnalysisIO, body: dict[str, Any], spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus,
                revision: str, now: datetime, may_query: bool = True) -> WarmupReading | None:
    """None unless the candidate `revision` is warming up (and a manual action is not waiting)."""
    state = status.warmup
    warming = (spec.strategy.warmup is not None and state is not None and state.passed_at is None
               and status.candidate_revision == revision
               and status.phase in (api.Phase.PROGRESSING, api.Phase.PAUSED))
    if not warming or not may_query:
        return None
    assert state is not None
    window = min(parse_duration(spec.analysis.window if spec.analysis else DEFAULT_WINDOW),
                 (now - parse_timestamp(state.started_at)).total_seconds())
    if window < 1:
        return WarmupReading(requests=0.0)
    chosen = profile(spec.analysis.profile if spec.analysis else None)
    assert chosen.latency is not None, "admission refuses a warm-up on a profile without a latency histogram"
    look_back = f"{int(window)}s"
    try:
        provider = provider_for(io, spec, body["metadata"]["namespace"], DEADLINE_SECONDS)
        buckets = provider.by_label(templates.buckets(chosen, chosen.latency, spec.model, revision, look_back), "le")
        requests = buckets.get("+Inf", 0.0)
        p95 = provider.scalar(templates.quantile(QUANTILE, chosen, chosen.latency, spec.model, revision, look_back))
    except (CredentialsUnavailable, MetricError) as error:
        return WarmupReading(error=str(error))
    except AnalysisInterrupted:
        return None
    return WarmupReading(requests=requests, latency_p95=p95 if p95 is not None and math.isfinite(p95) else None)
