"""Cost per request: the seeds' calculator, as a pure function.

GPU dollars per hour times GPUs, spread over the requests served: per request, per million, a
month of 730 hours, requests per dollar, and the cost per request at the average GPU utilization.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller import api

MONTHLY_HOURS = 730  # an average month


@dataclass(frozen=True)
class Cost:
    per_request: float
    per_million: float
    monthly: float
    requests_per_dollar: float
    effective_per_request: float  # at the given average utilization

    def lines(self) -> dict[str, str]:
        """The calculator's own formatting."""
        return {
            "cost_per_request": f"${self.per_request:.6f}",
            "cost_per_1M_requests": f"${self.per_million:.2f}",
            "monthly_gpu_cost": f"${self.monthly:,.0f}",
            "requests_per_dollar": f"{self.requests_per_dollar:,.0f}",
            "effective_cost_at_utilization": f"${self.effective_per_request:.6f}",
        }


def cost_per_request(gpu_hourly_cost: float, num_gpus: int, requests_per_second: float,
                     utilization: float = 0.7) -> Cost:
    if gpu_hourly_cost < 0 or num_gpus < 0:
        raise ValueError("the GPU price and count cannot be negative")
    if requests_per_second <= 0:
        raise ValueError("requests per second must be positive: a model serving nothing has no cost per request")
    if not 0 < utilization <= 1:
        raise ValueError("utilization is a fraction in (0, 1]")
    per_second = gpu_hourly_cost * num_gpus / 3600
    per_request = per_second / requests_per_second
    return Cost(
        per_request=per_request,
        per_million=per_request * 1_000_000,
        monthly=gpu_hourly_cost * num_gpus * MONTHLY_HOURS,
        requests_per_dollar=1 / per_request if per_request else float("inf"),
        effective_per_request=per_request / utilization,
    )


def version_cost(revision: str, gpus: int, requests: float | None, previous: api.VersionCost | None,
                 seconds: float, gpu_hourly_cost: float, utilization: float) -> api.VersionCost:
    """A version's status.cost entry from its request counter now and at the previous reading
    `seconds` ago; no rate on a first reading or across a counter reset, no per-request figures
    while it serves nothing."""
    monthly = round(gpu_hourly_cost * gpus * MONTHLY_HOURS, 2)
    rate = None
    if requests is not None and previous is not None and previous.revision == revision \
            and previous.requests is not None and requests >= previous.requests and seconds > 0:
        rate = (requests - previous.requests) / seconds
    entry = api.VersionCost(revision=revision, gpus=gpus, requests=requests, monthly=monthly,
                            requests_per_second=None if rate is None else round(rate, 3))
    if not rate:
        return entry
    cost = cost_per_request(gpu_hourly_cost, gpus, rate, utilization)
    return entry.model_copy(update={"per_million": round(cost.per_million, 2),
                                    "effective_per_million": round(cost.effective_per_request * 1e6, 2)})
