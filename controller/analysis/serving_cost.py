"""status.cost: each version's requests per second from Prometheus, priced by the seeds' calculator.

Each version's request counter is read once a minute while spec.cost is set, from the Prometheus the
analysis uses (or the operator's own); its rate is the difference from the last reading over the
time between them. Unlike rate() over a fixed window, that is exact for a candidate that started a
moment ago. A failed read keeps the last figures and says why; cost never moves a rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controller import api
from controller.analysis.credentials import CredentialsUnavailable
from controller.analysis.prometheus import AnalysisInterrupted
from controller.analysis.provider import MetricError
from controller.analysis.runner import AnalysisIO, provider_for
from controller.analysis.templates import requests_total
from controller.cost import version_cost
from controller.profiles import profile
from controller.timestamps import format_timestamp, parse_timestamp

INTERVAL = timedelta(seconds=60)
DEADLINE_SECONDS = 5.0


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
        provider = provider_for(io, spec, namespace, DEADLINE_SECONDS)
        chosen = profile(spec.analysis.profile if spec.analysis else None)
        seconds = (now - parse_timestamp(previous.measured_at)).total_seconds() if previous else 0.0
        costs = {
            role: version_cost(revision, gpus(revision), provider.scalar(requests_total(chosen, spec.model, revision)),
                               _entry(previous, revision), seconds, spec.cost.gpu_hourly_cost,
                               spec.cost.utilization)
            for role, revision in revisions.items() if revision is not None
        }
    except (CredentialsUnavailable, MetricError) as error:
        # The last figures stay; their counters go, so that no rate spans the failed reading.
        kept = api.CostStatus(measured_at=format_timestamp(now), reason=str(error), **{
            role: entry.model_copy(update={"requests": None})
            for role, entry in (("stable", previous.stable if previous else None),
                                ("candidate", previous.candidate if previous else None)) if entry is not None})
        return kept, now + INTERVAL
    except AnalysisInterrupted:
        return previous, now  # a manual action goes first; measure right after it
    return api.CostStatus(measured_at=format_timestamp(now), **costs), now + INTERVAL


def _entry(previous: api.CostStatus | None, revision: str) -> api.VersionCost | None:
    """The last reading of `revision`, whichever role it had (a promoted candidate is the stable now)."""
    if previous is None:
        return None
    return next((v for v in (previous.stable, previous.candidate) if v is not None and v.revision == revision), None)
