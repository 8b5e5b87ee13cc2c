"""Built-in PromQL over the metric names the seeds prescribe, so a conforming model server needs no PromQL.

    inference_request_total{model,version,status}
    inference_request_duration_seconds_bucket{model,version,le}
    model_prediction_value_bucket{model,version,le}
    model_conversions_total{model,version}
"""

from __future__ import annotations


def render(query: str, model: str, version: str, namespace: str, window: str = "1m") -> str:
    """Fill the {{model}}, {{version}}, {{namespace}} and {{window}} placeholders of a custom query.

    {{window}} is the look-back: the guardrail window, or for an A/B metric the time since the last
    look, so that `increase(x[{{window}}])` is the look's own count. An A/B query without {{window}}
    returns the counter's total, and the look counts the difference from the last one.
    """
    for placeholder, value in (("model", model), ("version", version), ("namespace", namespace),
                               ("window", window)):
        query = query.replace("{{" + placeholder + "}}", value)
    return query


def _sel(model: str, version: str, extra: str = "") -> str:
    return f'model="{model}",version="{version}"' + (f",{extra}" if extra else "")


def error_rate(model: str, version: str, window: str) -> str:
    errors = request_count(model, version, window, "error")
    return f"({errors} or vector(0)) / {request_count(model, version, window)}"


def latency_quantile(quantile: float, model: str, version: str, window: str) -> str:
    buckets = f"inference_request_duration_seconds_bucket{{{_sel(model, version)}}}"
    return f"histogram_quantile({quantile}, sum by (le) (rate({buckets}[{window}])))"


def request_count(model: str, version: str, window: str, status: str | None = None) -> str:
    extra = f'status="{status}"' if status else ""
    return f"sum(increase(inference_request_total{{{_sel(model, version, extra)}}}[{window}]))"


def histogram_buckets(metric: str, model: str, version: str, window: str) -> str:
    """Cumulative bucket counts over the window, keyed by `le`."""
    return f"sum by (le) (increase({metric}_bucket{{{_sel(model, version)}}}[{window}]))"


def prediction_buckets(model: str, version: str, window: str) -> str:
    return histogram_buckets("model_prediction_value", model, version, window)


def latency_buckets(model: str, version: str, window: str) -> str:
    return histogram_buckets("inference_request_duration_seconds", model, version, window)


# Counter totals, read at every look: a look counts the difference from the last one, so its cost
# does not grow with the step's age as an increase() over the whole step would.


def request_totals(model: str, version: str) -> str:
    """Requests so far keyed by `status` (ok, error)."""
    return f"sum by (status) (inference_request_total{{{_sel(model, version)}}})"


def latency_bucket_totals(model: str, version: str) -> str:
    """Requests so far at or under each latency bound, keyed by `le`."""
    return f"sum by (le) (inference_request_duration_seconds_bucket{{{_sel(model, version)}}})"


def conversion_total(model: str, version: str) -> str:
    return f"sum(model_conversions_total{{{_sel(model, version)}}})"
