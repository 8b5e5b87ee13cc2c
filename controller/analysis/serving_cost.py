"""status.cost: each version's requests per second from Prometheus, priced by the seeds' calculator.

Read once a minute while spec.cost is set, from the Prometheus the analysis uses (or the operator's
own). A failed read keeps the last figures and says why; cost never moves a rollout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controller import api
from controller.analysis.credentials import CredentialsUnavailable
from controller.analysis.prometheus import AnalysisInterrupted, PrometheusProvider
from controller.analysis.provider import MetricError
from controller.analysis.runner import AnalysisIO, prometheus_for
from controller.cost import version_cost
from controller.timestamps import format_timestamp, parse_timestamp

INTERVAL = timedelta(seconds=60)
WINDOW = "2m"
DEADLINE_SECONDS = 5.0


def requests_per_second(model: str, version: str, window: str = WINDOW) -> str:
    return f'sum(rate(inference_request_total{{model="{model}",version="{version}"}}[{window}]))'


def measure_cost(io: AnalysisIO, body: dict[str, Any], spec: api.ModelRolloutSpec, status: api.ModelRolloutStatus,
                 gpus: Callable[[str], int], now: datetime) -> tuple[api.CostStatus | None, datetime | None]:
    """The rollout's status.cost and when to measure next; (None, None) without spec.cost.

    `gpus(revision)`: GPUs serving that revision now (0 when it has no Deployment)."""
    if spec.cost is None or status.stable_revision is None:
        return None, None
    previous = status.cost
    if previous is not None and now < parse_timestamp(previous.measured_at) + INTERVAL:
        return previous, parse_timestamp(previous.measured_at) + INTERVAL
    namespace = body["metadata"]["namespace"]
    revisions = {"stable": status.stable_revision, "candidate": status.candidate_revision}
    try:
        address, credentials = prometheus_for(io, spec.analysis.prometheus if spec.analysis else None, namespace)
        provider = PrometheusProvider(io.pool, address, credentials, time.monotonic() + DEADLINE_SECONDS,
                                      io.interrupted)
        costs = {
            role: version_cost(revision, gpus(revision), provider.scalar(requests_per_second(spec.model, revision)),
                               spec.cost.gpu_hourly_cost, spec.cost.utilization)
            for role, revision in revisions.items() if revision is not None
        }
    except (CredentialsUnavailable, MetricError) as error:
        kept = previous.model_copy(update={"measured_at": format_timestamp(now), "reason": str(error)}) if previous \
            else api.CostStatus(measured_at=format_timestamp(now), window=WINDOW, reason=str(error))
        return kept, now + INTERVAL
    except AnalysisInterrupted:
        return previous, now  # a manual action goes first; measure right after it
    return api.CostStatus(measured_at=format_timestamp(now), window=WINDOW, **costs), now + INTERVAL
