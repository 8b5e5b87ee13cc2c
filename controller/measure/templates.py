"""Built-in PromQL, on the metric names of the rollout's profile (`controller/profiles.py`), so a
server that exports what its profile says needs no PromQL.

Every template aggregates `by` the labels that name an arm (the model label where the series has
one, and the version), so the same text answers for one arm (`Arm`) or, with `FLEET`, for every
arm on the Prometheus at once: a fleet of rollouts shares one evaluation per template.

Counters are read as totals at every look (a look counts the difference from the last one, so its
cost does not grow with the step's age); windowed values (what status shows, and threshold
guardrails) use increase()/rate() over the guardrail window.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.profiles import (
    GATEWAY_ARM_LABELS,
    GATEWAY_TEMPLATES,
    Backend,
    GatewayProfile,
    Profile,
    Series,
    promql_string,
)


@dataclass(frozen=True)
class Arm:
    """One version of one model: what a rollout's reading selects; in a gateway's series, the backend
    that version was reached through."""

    model: str
    version: str
    backend: Backend | None = None


# Every arm: series with a version label (the operator's pods), grouped by arm.
FLEET: Arm | None = None


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


@dataclass(frozen=True)
class Grouping:
    """The labels that name an arm in a template's answer, and the arm's values of them."""

    labels: tuple[str, ...]

    def key(self, arm: Arm) -> tuple[str, ...]:
        if self.labels == GATEWAY_ARM_LABELS:
            assert arm.backend is not None, "a gateway's arm is a backend"
            return arm.backend.namespace, arm.backend.key
        return (arm.model, arm.version) if len(self.labels) == 2 else (arm.version,)

    def by(self, *extra: str) -> str:
        return f"by ({', '.join((*extra, *self.labels))})"


def _gateway(profile: Profile, template: str) -> GatewayProfile | None:
    """The gateway whose series a template reads, if it is not the server's."""
    return profile.gateway if template in GATEWAY_TEMPLATES else None


def grouping(profile: Profile, template: str = "requests") -> Grouping:
    """Series of the templates in `profile.unlabelled` (and every series of a profile with no model
    label) are told apart by version alone; a gateway's, by the backend it sent them to."""
    if _gateway(profile, template):
        return Grouping(GATEWAY_ARM_LABELS)
    template = template.removeprefix("server-")  # the server's own series of a kind a gateway also measures
    if profile.model_label and template not in profile.unlabelled:
        return Grouping((profile.model_label, profile.version_label))
    return Grouping((profile.version_label,))


def _selector(profile: Profile, series: Series, arm: Arm | None, template: str) -> str:
    gateway = _gateway(profile, template)
    if gateway is not None:
        if arm is None:
            parts = [gateway.every]
        else:
            assert arm.backend is not None, "a gateway's arm is a backend"
            parts = [gateway.one(arm.backend)]
    elif arm is None:
        parts = [f'{profile.version_label}!=""']
    else:
        parts = [f'{profile.version_label}="{promql_string(arm.version)}"']
        if len(grouping(profile, template).labels) == 2:
            parts.insert(0, f'{profile.model_label}="{promql_string(arm.model)}"')
    if series.match:
        parts.append(series.match)
    return "{" + ",".join(parts) + "}"


def _arms(profile: Profile, template: str, expression: str) -> str:
    """`expression` with the labels its grouping names: a gateway's are made from its own labels."""
    gateway = _gateway(profile, template)
    return gateway.arms.format(expression) if gateway else expression


def _of(profile: Profile, series: Series, arm: Arm | None, template: str = "requests") -> str:
    return series.name + _selector(profile, series, arm, template)


def _histogram(profile: Profile, series: Series, arm: Arm | None) -> str:
    return f"{series.name}_bucket" + _selector(profile, series, arm, latency_kind(profile, series))


def _part(query: str, part: str) -> str:
    return f'label_replace({query}, "part", "{part}", "__name__", ".*")'


# --- requests -------------------------------------------------------------------------------


def request_parts(profile: Profile) -> tuple[str, ...]:
    """Which of total, errors and successes the profile counts (two of them)."""
    requests = profile.requests
    return tuple(part for part, series in (("total", requests.total), ("errors", requests.errors),
                                           ("successes", requests.successes)) if series)


def request_totals(profile: Profile, arm: Arm | None) -> str:
    """Each request counter's total, and the mean time of the counters' last samples, in one
    evaluation (two queries could straddle a scrape), told apart by a `part` label: total, errors or
    successes, and time."""
    requests, by = profile.requests, grouping(profile).by()
    selectors = {part: _of(profile, getattr(requests, part), arm) for part in request_parts(profile)}
    stamps = " or ".join(f"timestamp({selector})" for selector in selectors.values())
    return " or ".join([*(_part(f"sum {by} ({_arms(profile, 'requests', selector)})", part)
                          for part, selector in selectors.items()),
                        _part(f"avg {by} ({_arms(profile, 'requests', stamps)})", "time")])


def outcomes(profile: Profile, totals: dict[str, float]) -> dict[str, float]:
    """{ok, error} from the profile's two request counters' totals (a counter with no series is 0)."""
    parts = request_parts(profile)
    total, errors, successes = (totals.get(part, 0.0) for part in ("total", "errors", "successes"))
    if "total" in parts and "errors" in parts:
        return {"ok": total - errors, "error": errors}
    if "total" in parts:
        return {"ok": successes, "error": total - successes}
    return {"ok": successes, "error": errors}


def error_rate(profile: Profile, arm: Arm | None, window: str) -> str:
    """Errors over requests in the window, per arm; an arm with requests but no error series has 0."""
    requests, by = profile.requests, grouping(profile).by()

    def increase(series: Series | None) -> str:
        assert series is not None
        return f"sum {by} ({_arms(profile, 'requests', f'increase({_of(profile, series, arm)}[{window}])')})"

    if requests.total and requests.errors:
        total = increase(requests.total)
        return f"({increase(requests.errors)} or {total} * 0) / {total}"
    if requests.total and requests.successes:
        total = increase(requests.total)
        return f"1 - ({increase(requests.successes)} or {total} * 0) / {total}"
    errors, successes = increase(requests.errors), increase(requests.successes)
    errors, successes = f"({errors} or {successes} * 0)", f"({successes} or {errors} * 0)"
    return f"{errors} / ({errors} + {successes})"


# --- histograms -----------------------------------------------------------------------------


def latency_kind(profile: Profile, series: Series) -> str:
    """The template kind of a histogram: "latency", but a gateway's only for its own request latency."""
    return "latency" if profile.gateway is None or series == profile.gateway.latency else "server-latency"


def quantile(q: float, profile: Profile, series: Series, arm: Arm | None, window: str) -> str:
    """In seconds, whatever the histogram's unit."""
    template = latency_kind(profile, series)
    gateway, by = _gateway(profile, template), grouping(profile, template).by("le")
    rates = _arms(profile, template, f"rate({_histogram(profile, series, arm)}[{window}])")
    found = f"histogram_quantile({q}, sum {by} ({rates}))"
    return f"{gateway.latency_seconds_per_unit} * {found}" if gateway else found


def buckets(profile: Profile, series: Series, arm: Arm | None, window: str) -> str:
    """Cumulative bucket counts over the window, keyed by `le` (in the histogram's unit)."""
    template = latency_kind(profile, series)
    by = grouping(profile, template).by("le")
    return f"sum {by} ({_arms(profile, template, f'increase({_histogram(profile, series, arm)}[{window}])')})"


def bucket_totals(profile: Profile, series: Series, arm: Arm | None) -> str:
    """Requests so far at or under each bound, keyed by `le` (in the histogram's unit)."""
    template = latency_kind(profile, series)
    return f"sum {grouping(profile, template).by('le')} ({_arms(profile, template, _histogram(profile, series, arm))})"


# --- gauges and rates -----------------------------------------------------------------------


def gauge_mean(profile: Profile, series: Series, arm: Arm | None, window: str) -> str:
    """The gauge's mean over the window, averaged over the version's pods."""
    selector = series.name + _selector(profile, series, arm, "gauges")
    return f"avg {grouping(profile, 'gauges').by()} (avg_over_time({selector}[{window}]))"


def decode_speed(profile: Profile, series: Series, arm: Arm | None, window: str) -> str:
    """Tokens per second of one request stream: 1 / the mean inter-token latency over the window."""
    selector, by = _selector(profile, series, arm, "gauges"), grouping(profile, "gauges").by()
    return (f"sum {by} (rate({series.name}_count{selector}[{window}])) "
            f"/ sum {by} (rate({series.name}_sum{selector}[{window}]))")


# The fullest GPU of each pod (DCGM, as the seeds' GPUMemoryNearFull reads it). DCGM's series carry no
# version: a rollout picks its version's pods by name, `<rollout>-<revision>-...`.
GPU_MEMORY_BY_POD = ('max by (namespace, pod) (DCGM_FI_DEV_FB_USED{pod!=""} '
                     '/ (DCGM_FI_DEV_FB_USED{pod!=""} + DCGM_FI_DEV_FB_FREE{pod!=""}))')


# The server's conversion counter: grouped like its requests, never a gateway's.
CONVERSIONS = "server-requests"


def conversion_total(profile: Profile, arm: Arm | None) -> str:
    assert profile.conversions is not None
    return f"sum {grouping(profile, CONVERSIONS).by()} ({_of(profile, profile.conversions, arm, CONVERSIONS)})"


# The comparators' counters, every rollout's in one answer (a fleet query, shared like the others):
# grouped by the rollout the series carry (`modelrollout`), each series' labels joined into `part`.
COMPARISONS = (
    'label_join(sum by (modelrollout, __name__, cell, side, reason, le, field, process) ('
    '{__name__=~"modelrollout_compare_(requests|slower|failures|skipped|differences|labelled|unlabelled|feedback'
    '|error_difference|absolute_error|judged|judge_positions|judge_swaps|judge_failures|judge_skipped'
    '|calibration)_total'
    '|modelrollout_compare_output_delta_bucket"}), "part", "|", "__name__", "cell", "side", "reason", "le", "field",'
    ' "process")'
)
