"""Built-in PromQL, on the metric names of the rollout's profile (`controller/profiles.py`), so a
server that exports what its profile says needs no PromQL.

Counters are read as totals at every look (a look counts the difference from the last one, so its
cost does not grow with the step's age); windowed values (what status shows, and threshold
guardrails) use increase()/rate() over the guardrail window.
"""

from __future__ import annotations

from controller.profiles import Profile, Series, promql_string


def render(query: str, model: str, version: str, namespace: str, window: str = "1m") -> str:
    """Fill the {{model}}, {{version}}, {{namespace}} and {{window}} placeholders of a custom query.

    Every value but the window (a validated duration) is escaped as a PromQL label value: the
    placeholders sit inside quoted matchers. {{window}} is the look-back: the guardrail window, or
    for an A/B metric the time since the last look, so that `increase(x[{{window}}])` is the look's
    own count. An A/B query without {{window}} returns the counter's total, and the look counts the
    difference from the last one.
    """
    for placeholder, value in (("model", promql_string(model)), ("version", promql_string(version)),
                               ("namespace", promql_string(namespace)), ("window", window)):
        query = query.replace("{{" + placeholder + "}}", value)
    return query


def _of(profile: Profile, series: Series, model: str, version: str) -> str:
    scoped = "requests" not in profile.unlabelled
    return series.name + profile.selector(model, version, series, scoped)


def _histogram(profile: Profile, series: Series, model: str, version: str) -> str:
    scoped = "latency" not in profile.unlabelled
    return f"{series.name}_bucket" + profile.selector(model, version, series, scoped)


# --- requests -------------------------------------------------------------------------------


def request_selectors(profile: Profile, model: str, version: str) -> dict[str, str]:
    """The series selectors of the profile's two request counters, keyed by total, errors or successes."""
    requests = profile.requests
    parts = {"total": requests.total, "errors": requests.errors, "successes": requests.successes}
    return {key: _of(profile, series, model, version) for key, series in parts.items() if series}


def request_total_queries(profile: Profile, model: str, version: str) -> dict[str, str]:
    """Counter totals of the profile's two request series, keyed by total, errors or successes."""
    return {key: f"sum({selector})" for key, selector in request_selectors(profile, model, version).items()}


def stamped_total(selector: str) -> str:
    """The counters' total and the mean time of their series' last samples, in one evaluation, told
    apart by a `part` label ("total", "time"): two queries could straddle a scrape."""
    return (f'label_replace(sum({selector}), "part", "total", "__name__", ".*") or '
            f'label_replace(avg(timestamp({selector})), "part", "time", "__name__", ".*")')


def outcomes(totals: dict[str, float | None]) -> dict[str, float]:
    """{ok, error} from whichever two of total, errors and successes were read (a missing one is 0)."""
    total, errors, successes = totals.get("total"), totals.get("errors"), totals.get("successes")
    if "total" in totals and "errors" in totals:
        return {"ok": (total or 0.0) - (errors or 0.0), "error": errors or 0.0}
    if "total" in totals:
        return {"ok": successes or 0.0, "error": (total or 0.0) - (successes or 0.0)}
    return {"ok": successes or 0.0, "error": errors or 0.0}


def error_rate(profile: Profile, model: str, version: str, window: str) -> str:
    requests = profile.requests

    def increase(series: Series) -> str:
        return f"sum(increase({_of(profile, series, model, version)}[{window}]))"

    if requests.total and requests.errors:
        return f"({increase(requests.errors)} or vector(0)) / {increase(requests.total)}"
    if requests.total and requests.successes:
        return f"1 - ({increase(requests.successes)} or vector(0)) / {increase(requests.total)}"
    assert requests.errors and requests.successes
    errors = f"({increase(requests.errors)} or vector(0))"
    return f"{errors} / ({errors} + ({increase(requests.successes)} or vector(0)))"


def requests_total(profile: Profile, model: str, version: str) -> str:
    """All requests so far, one number: for the cost per request."""
    queries = request_total_queries(profile, model, version)
    if "total" in queries:
        return queries["total"]
    return f"({queries['errors']} or vector(0)) + ({queries['successes']} or vector(0))"


# --- histograms -----------------------------------------------------------------------------


def quantile(q: float, profile: Profile, series: Series, model: str, version: str, window: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({_histogram(profile, series, model, version)}[{window}])))"


def buckets(profile: Profile, series: Series, model: str, version: str, window: str) -> str:
    """Cumulative bucket counts over the window, keyed by `le`."""
    return f"sum by (le) (increase({_histogram(profile, series, model, version)}[{window}]))"


def bucket_totals(profile: Profile, series: Series, model: str, version: str) -> str:
    """Requests so far at or under each bound, keyed by `le`."""
    return f"sum by (le) ({_histogram(profile, series, model, version)})"


# --- gauges and rates -----------------------------------------------------------------------


def gauge_mean(profile: Profile, series: Series, model: str, version: str, window: str) -> str:
    """The gauge's mean over the window, averaged over the version's pods."""
    return f"avg(avg_over_time({series.name}{profile.selector(model, version, series)}[{window}]))"


def decode_speed(profile: Profile, series: Series, model: str, version: str, window: str) -> str:
    """Tokens per second of one request stream: 1 / the mean inter-token latency over the window."""
    selector = profile.selector(model, version, series)
    return f"sum(rate({series.name}_count{selector}[{window}])) / sum(rate({series.name}_sum{selector}[{window}]))"


def gpu_memory_usage(namespace: str, rollout: str, version: str) -> str:
    """The fullest GPU of the version's pods (DCGM, as the seeds' GPUMemoryNearFull reads it); pods are
    named after their Deployment, `<rollout>-<revision>-`."""
    pods = f'{{namespace="{namespace}",pod=~"{rollout}-{version}-.*"}}'
    return f"max(DCGM_FI_DEV_FB_USED{pods} / (DCGM_FI_DEV_FB_USED{pods} + DCGM_FI_DEV_FB_FREE{pods}))"


def conversion_total(profile: Profile, model: str, version: str) -> str:
    assert profile.conversions is not None
    return f"sum({_of(profile, profile.conversions, model, version)})"
