"""The ModelRollout API (rollouts.mlops.dev/v1alpha1): the single source the CRD is generated from.

CRD fields are camelCase; Python names are snake_case, bridged by an alias
generator. Spec models are frozen and forbid unknown fields. Each CEL rule in
`x-kubernetes-validations` has a pydantic twin, so the engine rejects the same
specs that admission rejects (a spec can predate a CRD upgrade).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from controller.durations import DURATION_PATTERN, parse_duration

GROUP = "rollouts.mlops.dev"
VERSION = "v1alpha1"
KIND = "ModelRollout"
PLURAL = "modelrollouts"
SINGULAR = "modelrollout"
SHORT_NAMES = ("mro",)

# The annotation through which kubectl (and the plugin) asks for a manual action.
ACTION_ANNOTATION = f"{GROUP}/action"


class Action(StrEnum):
    """The manual actions: the annotation's value, applied exactly once."""

    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    UNDO = "undo"


ACTIONS = tuple(action.value for action in Action)


class PauseReason(StrEnum):
    USER = "user"  # the pause action
    STEP = "step"  # a pause step without duration, or an inconclusive A/B test set to pause
    ANALYSIS = "analysis"  # measurements failing past errorLimit; resumes when they return
    HALTED = "halted"  # the experiment itself is broken (a sample-ratio mismatch): a human resumes


class Verdict(StrEnum):
    """The A/B step's statistical verdict: the one spelling in status, Events, the engine and the analysis."""

    CANDIDATE_BETTER = "CandidateBetter"
    CANDIDATE_WORSE = "CandidateWorse"
    NO_DIFFERENCE = "NoDifference"
    INCONCLUSIVE = "Inconclusive"


class AnalysisVerdict(StrEnum):
    """What one analysis run tells the engine."""

    PASS = "Pass"  # noqa: S105 - nothing wrong (not a password)
    FAIL = "Fail"  # a guardrail breached: roll back
    HOLD = "Hold"  # do not advance yet (drift in shadow, no data yet, a guardrail set to hold)
    ERROR = "Error"  # measurements failing past errorLimit: onError decides
    HALT = "Halt"  # the experiment itself is broken (a sample-ratio mismatch): wait for a human


class GuardrailOutcome(StrEnum):
    """One guardrail at one analysis run, after Argo's metric phases."""

    PASSED = "Passed"
    BREACHED = "Breached"
    NO_DATA = "NoData"
    ERROR = "Error"

def _positive_duration(text: str) -> str:
    if parse_duration(text) <= 0:
        raise ValueError("must be longer than 0s")
    return text


def _http_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as error:
        raise ValueError(f"must be a valid http(s) URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be a valid http(s) URL")
    return text


# Positive: a 0s interval would query in a loop, a 0s window would look at nothing.
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra={
    "x-kubernetes-validations": [{"rule": "duration(self) > duration('0s')", "message": "must be longer than 0s"}],
}), AfterValidator(_positive_duration)]
HttpURL = Annotated[str, Field(pattern=r"^https?://", max_length=2048, json_schema_extra={
    "x-kubernetes-validations": [{"rule": "isURL(self) && url(self).getHostname() != ''",
                                  "message": "must be a valid http(s) URL"}],
}), AfterValidator(_http_url)]
Percent = Annotated[int, Field(ge=0, le=100)]
MAX_STEPS = 64
METRIC_UNKNOWN = "abTest.metric must be conversion, success, or the name of one of analysis.metrics"


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, JsonValue]:
    validation: dict[str, JsonValue] = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


class SpecModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


# --- steps -----------------------------------------------------------------


class ShadowStep(SpecModel):
    """Mirror a share of live traffic to the candidate; responses to users still come from the stable."""

    percent: Percent = 100
    duration: Duration


class CanaryStep(SpecModel):
    """Send `weight` percent of live traffic to the candidate."""

    weight: Percent
    duration: Duration | None = None


class HeaderMatch(SpecModel):
    """Requests carrying this header value always reach the candidate (an A/B cohort)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", max_length=256)]
    value: Annotated[str, Field(min_length=1, max_length=4096)]


class ABTestStep(SpecModel):
    """Split traffic and run until a statistically valid verdict, or `maxDuration`."""

    weight: Percent = 50
    header_route: HeaderMatch | None = None
    max_duration: Duration
    min_duration: Duration | None = None
    metric: Annotated[str, Field(description=(
        "The metric judged: `conversion`, `success`, or the name of an entry of analysis.metrics."))] | None = None
    alpha: Annotated[float, Field(gt=0, lt=0.5, description=(
        "The chance of a false CandidateBetter or CandidateWorse when the two are the same, and of a false "
        "NoDifference when they differ by the minimum detectable effect or more."))] = 0.05
    minimum_detectable_effect: Annotated[float, Field(gt=0, description=(
        "The smallest change of the metric's rate that matters, read as `effect` says: 0.01 with "
        "effect: absolute is one percentage point (10% -> 11%); with effect: relative it is 1% of the "
        "stable's rate (10% -> 10.1%)."))] = 0.01
    effect: Annotated[Literal["absolute", "relative"], Field(description=(
        "How minimumDetectableEffect is read: `absolute` (the default), a difference of rates; "
        "`relative`, a share of the stable's rate."))] = "absolute"
    on_inconclusive: Literal["promote", "rollback", "pause"] = "pause"


class PauseStep(SpecModel):
    """A manual gate; with a duration it resumes by itself."""

    duration: Duration | None = None


STEP_KINDS = ("shadow", "canary", "abTest", "pause")


class Step(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "[has(self.shadow), has(self.canary), has(self.abTest), has(self.pause)]"
                    ".filter(x, x).size() == 1",
                    "each step must set exactly one of shadow, canary, abTest or pause",
                )
            ]
        }
    )

    shadow: ShadowStep | None = None
    canary: CanaryStep | None = None
    ab_test: ABTestStep | None = Field(default=None, alias="abTest")
    pause: PauseStep | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        if sum(kind is not None for kind in (self.shadow, self.canary, self.ab_test, self.pause)) != 1:
            raise ValueError("each step must set exactly one of shadow, canary, abTest or pause")
        return self

    @property
    def kind(self) -> str:
        for name, value in zip(STEP_KINDS, (self.shadow, self.canary, self.ab_test, self.pause), strict=True):
            if value is not None:
                return name
        raise AssertionError("validated: exactly one kind is set")

    @property
    def traffic_weight(self) -> int | None:
        if self.canary is not None:
            return self.canary.weight
        if self.ab_test is not None:
            return self.ab_test.weight
        return None


class Strategy(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.steps.filter(s, has(s.canary) || has(s.abTest))"
                    ".map(s, has(s.canary) ? s.canary.weight : s.abTest.weight).isSorted()",
                    "canary and abTest weights must not decrease from one step to the next",
                    ".steps",
                )
            ]
        }
    )

    steps: Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS)]
    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] = 1800

    @model_validator(mode="after")
    def _weights_never_decrease(self) -> Strategy:
        weights = [step.traffic_weight for step in self.steps if step.traffic_weight is not None]
        if weights != sorted(weights):
            raise ValueError("canary and abTest weights must not decrease from one step to the next")
        return self


# --- routing ---------------------------------------------------------------


class GatewayAPIRouting(SpecModel):
    http_route: Annotated[str, Field(min_length=1, max_length=253)]
    # The rule to manage, by name; default: the rule whose backendRefs name our Services.
    rule_name: str | None = None


class IstioRouting(SpecModel):
    virtual_service: Annotated[str, Field(min_length=1, max_length=253)]
    # The http route to manage, by name; default: the route whose destinations are our Services.
    route_name: str | None = None


class ReplicasRouting(SpecModel):
    pass


class TrafficRouting(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "[has(self.gatewayAPI), has(self.istio), has(self.replicas)].filter(x, x).size() == 1",
                    "set exactly one routing mode: gatewayAPI, istio or replicas",
                )
            ]
        }
    )

    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")
    istio: IstioRouting | None = None
    replicas: ReplicasRouting | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TrafficRouting:
        if sum(mode is not None for mode in (self.gateway_api, self.istio, self.replicas)) != 1:
            raise ValueError("set exactly one routing mode: gatewayAPI, istio or replicas")
        return self

    @property
    def mode(self) -> Literal["gatewayAPI", "istio", "replicas"]:
        if self.gateway_api is not None:
            return "gatewayAPI"
        if self.istio is not None:
            return "istio"
        return "replicas"


# --- analysis --------------------------------------------------------------


class SecretKeyRef(SpecModel):
    name: Annotated[str, Field(min_length=1)]


class PrometheusSource(SpecModel):
    address: HttpURL
    # A Secret with optional keys: token, username, password, ca.crt.
    secret_ref: SecretKeyRef | None = None


class Guardrail(SpecModel):
    """A check at every analysis run.

    errorRate, latencyP99 and latencyP95 are sequential tests of the candidate against the stable:
    the step rolls back once the candidate's errors (or requests slower than the stable's p99/p95)
    outrun the stable's by more than `relativeToStable` (default 1: any excess) beyond doubt, within
    this guardrail's share of analysis.alpha. `max` is then a floor of practical significance: no
    breach while the candidate's value over analysis.window stays at or under it. A custom `query`
    and predictionPSI are thresholds: the value over the window against max, min and
    relativeToStable x the stable's, acting after failureLimit breaches in a row.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.template) != has(self.query)", "set exactly one of template or query"),
                _cel(
                    "has(self.max) || has(self.min) || has(self.relativeToStable)",
                    "a guardrail needs a bound: max, min or relativeToStable",
                ),
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=63)]
    template: Literal["errorRate", "latencyP99", "latencyP95", "predictionPSI"] | None = None
    query: Annotated[str, Field(max_length=4096)] | None = None
    max: float | None = None
    min: float | None = None
    relative_to_stable: Annotated[float, Field(gt=0)] | None = None
    # Breaches tolerated before acting; the next one acts (Argo's failureLimit).
    failure_limit: Annotated[int, Field(ge=0)] = 0
    during: Annotated[list[Literal["shadow", "canary", "abTest", "pause"]], Field(max_length=4)] | None = None
    # What a breach does; default: predictionPSI holds the step (a better model may differ), others roll back.
    on_breach: Literal["rollback", "hold"] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Guardrail:
        if (self.template is None) == (self.query is None):
            raise ValueError("set exactly one of template or query")
        if self.max is None and self.min is None and self.relative_to_stable is None:
            raise ValueError("a guardrail needs a bound: max, min or relativeToStable")
        return self


class Metric(SpecModel):
    """A rate an abTest step judges: successes over trials, from PromQL counters or a built-in template.

    Built-ins: `conversion` (model_conversions_total over ok requests) and `success`
    (ok requests over all requests). Queries may use {{model}}, {{version}}, {{namespace}} and
    {{window}} (the step's sample so far), e.g. `sum(increase(clicks_total{version="{{version}}"}[{{window}}]))`.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.template) != (has(self.successes) && has(self.trials))",
                     "set either template, or both successes and trials"),
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=63)]
    template: Literal["conversion", "success"] | None = None
    successes: Annotated[str, Field(max_length=4096)] | None = None
    trials: Annotated[str, Field(max_length=4096)] | None = None
    higher_is_better: bool = True

    @model_validator(mode="after")
    def _source(self) -> Metric:
        if (self.template is None) == (self.successes is None or self.trials is None):
            raise ValueError("set either template, or both successes and trials")
        return self


class Analysis(SpecModel):
    prometheus: PrometheusSource | None = None
    # Family-wise: the chance that a step whose candidate is no worse is rolled back by any of
    # its statistical guardrails (errorRate, latencyP99, latencyP95), split between them.
    alpha: Annotated[float, Field(gt=0, lt=0.5, description=(
        "The chance that the statistical guardrails (errorRate, latencyP99, latencyP95) roll back a step "
        "whose candidate is no worse than the stable, across all of them."))] = 0.05
    interval: Duration = "10s"
    # The look-back of guardrail queries (rates and quantiles).
    window: Duration = "1m"
    guardrails: Annotated[list[Guardrail], Field(max_length=32)] = []
    metrics: Annotated[list[Metric], Field(max_length=32)] = []
    # Consecutive measurement errors (or no data) before the policy acts.
    error_limit: Annotated[int, Field(ge=1)] = 3
    on_error: Literal["pause", "rollback"] = "pause"


class ServicePort(SpecModel):
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    target_port: Annotated[int, Field(ge=1, le=65535)] | None = None


class ModelRolloutSpec(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.trafficRouting.replicas) || !self.strategy.steps.exists(s, has(s.shadow))",
                    "a shadow step mirrors traffic, which trafficRouting.replicas cannot do: "
                    "use gatewayAPI or istio, or drop the shadow step",
                    ".strategy.steps",
                ),
                _cel(
                    "!has(self.trafficRouting.replicas) || "
                    "!self.strategy.steps.exists(s, has(s.abTest) && has(s.abTest.headerRoute))",
                    "abTest.headerRoute routes by header, which trafficRouting.replicas cannot do",
                    ".strategy.steps",
                ),
                _cel(
                    "self.strategy.steps.all(s, !has(s.abTest) || !has(s.abTest.metric) || "
                    "s.abTest.metric in ['conversion', 'success'] || (has(self.analysis) && "
                    "has(self.analysis.metrics) && self.analysis.metrics.exists(m, m.name == s.abTest.metric)))",
                    METRIC_UNKNOWN,
                    ".strategy.steps",
                ),
                _cel(
                    "!self.strategy.steps.exists(s, has(s.abTest) && has(s.abTest.metric)) || "
                    "(has(self.analysis) && has(self.analysis.prometheus))",
                    "an abTest metric needs analysis.prometheus to be measured",
                    ".strategy.steps",
                ),
            ]
        }
    )

    model: Annotated[str, Field(min_length=1, max_length=63)]
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    template: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    service: ServicePort = ServicePort()
    traffic_routing: TrafficRouting
    strategy: Strategy
    analysis: Analysis | None = None
    # On delete, Orphan leaves the stable Deployment and its Services serving (the user's route
    # keeps working); Delete removes every object the rollout made.
    deletion_policy: Literal["Orphan", "Delete"] = "Orphan"

    @model_validator(mode="after")
    def _shadow_needs_a_mirror(self) -> ModelRolloutSpec:
        if self.traffic_routing.replicas is not None and any(s.shadow for s in self.strategy.steps):
            raise ValueError("a shadow step mirrors traffic, which trafficRouting.replicas cannot do")
        if self.traffic_routing.replicas is not None and any(
            s.ab_test and s.ab_test.header_route for s in self.strategy.steps
        ):
            raise ValueError("abTest.headerRoute routes by header, which trafficRouting.replicas cannot do")
        known = {"conversion", "success", *(m.name for m in self.analysis.metrics)} if self.analysis else {
            "conversion", "success"}
        metrics = [s.ab_test.metric for s in self.strategy.steps if s.ab_test and s.ab_test.metric]
        if any(metric not in known for metric in metrics):
            raise ValueError(METRIC_UNKNOWN)
        if metrics and (self.analysis is None or self.analysis.prometheus is None):
            raise ValueError("an abTest metric needs analysis.prometheus to be measured")
        containers = self.template.get("spec", {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("template.spec.containers must list at least one container")
        return self

    def step_seconds(self, index: int) -> float | None:
        step = self.strategy.steps[index]
        duration = (
            step.shadow.duration if step.shadow else
            step.canary.duration if step.canary else
            step.ab_test.max_duration if step.ab_test else
            step.pause.duration if step.pause else None
        )
        return parse_duration(duration) if duration else None


# --- status ----------------------------------------------------------------


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    DEGRADED = "Degraded"


class ConditionType(StrEnum):
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    ROLLED_BACK = "RolledBack"
    INVALID_SPEC = "InvalidSpec"
    CANDIDATE_UNSCHEDULABLE = "CandidateUnschedulable"


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")


class Condition(StatusModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str


class Decision(StatusModel):
    """A verdict or a breach that moved the rollout, as the test saw it then."""

    step: int
    test: str
    verdict: str
    at: str
    # The test's log e-value, and the anytime-valid p-value it gives: min(1, 1 / e-value).
    statistic: float | None = None
    p_value: float | None = None
    effect: float | None = None
    samples: int | None = None
    detail: str = ""


MAX_DECISIONS = 20


class GuardrailStatus(StatusModel):
    """One guardrail at the last analysis run.

    A statistical guardrail (errorRate, latencyP99, latencyP95) carries its running sequential test:
    the log likelihood ratio of each alternative of its mixture since the step began (`cumulative`)
    and its change detector (`detector`), so a restarted operator goes on with the same test.
    """

    outcome: GuardrailOutcome
    reason: str = ""
    # The candidate's and the stable's value over analysis.window (an error rate, a quantile, a PSI).
    value: float | None = None
    stable: float | None = None
    consecutive_failures: int = 0
    # The share of this step's false-rollback budget (analysis.alpha) this guardrail holds.
    alpha: float | None = None
    # log e-value of the test since the step began, and of the change detector, against their thresholds.
    evidence: float | None = None
    evidence_threshold: float | None = None
    detector: float | None = None
    detector_threshold: float | None = None
    cumulative: list[float] = []
    detector_state: list[float] = []
    looks: int = 0
    restarts: int = 0
    # Latency: a request is slow above these bucket bounds (seconds), the stable's and the candidate's.
    slow_above: list[float] | None = None
    # Events (errors, slow requests) and trials counted by the test, per arm: [stable, candidate].
    events: list[float] = [0.0, 0.0]
    trials: list[float] = [0.0, 0.0]


class ABTestStatus(StatusModel):
    """The abTest step's sequential test: design, evidence and progress."""

    metric: str
    verdict: Verdict | None = None
    # The design, fixed by the first interval with data (which the test then leaves out): which
    # outcome is counted (the rarer one), the baseline rate, and the MDE as log rate ratios of it.
    counted: Literal["successes", "failures"] | None = None
    baseline: float | None = None
    bounds: list[float] | None = None
    stable_rate: float | None = None
    candidate_rate: float | None = None
    # Relative difference of the rates (candidate / stable - 1).
    effect: float | None = None
    successes: list[float] = [0.0, 0.0]
    trials: list[float] = [0.0, 0.0]
    # Looks with data spent on the design sample.
    design_looks: int = 0
    # Trials in the smaller arm, and what the design needs there for 80% power at the MDE:
    # the median and 90th percentile of the sequential test's sample, and a fixed horizon's.
    samples: int = 0
    samples_needed: int | None = None
    samples_needed_p90: int | None = None
    fixed_horizon_samples: int | None = None
    progress: float = 0.0
    # log e-values: candidate worse, candidate better, and the two sides of "no difference".
    evidence: dict[str, float] = {}
    tests: dict[str, list[float]] = {}


class SampleRatioStatus(StatusModel):
    """The sequential sample-ratio check of an abTest step: requests per arm against the weight."""

    expected_share: float
    requests: list[float] = [0.0, 0.0]
    evidence: float | None = None
    threshold: float | None = None
    mismatch: bool = False
    tests: dict[str, list[float]] = {}


class ShadowStatus(StatusModel):
    """The comparison of the two models' predictions, shown even without a drift guardrail."""

    psi: float | None = None
    ks: float | None = None
    jensen_shannon: float | None = None


class AnalysisStatus(StatusModel):
    """The last analysis run of the current step attempt. The analysis alone writes it."""

    step: int
    step_started_at: str
    last_run: str
    looks: int = 0
    verdict: AnalysisVerdict
    reason: str = ""
    # The guardrail (or "abTest", "sampleRatio") whose result decided this verdict.
    decided_by: str | None = None
    consecutive_errors: int = 0
    duration_ms: float | None = None
    # Counter values at the last look: each look counts only what came since.
    counters: dict[str, float] = {}
    guardrails: dict[str, GuardrailStatus] = {}
    ab_test: ABTestStatus | None = None
    sample_ratio: SampleRatioStatus | None = None
    shadow: ShadowStatus | None = None


class ModelRolloutStatus(StatusModel):
    phase: Phase = Phase.PENDING
    observed_generation: int = 0
    message: str = ""
    stable_revision: str | None = None
    candidate_revision: str | None = None
    previous_stable_revision: str | None = None
    current_step: int = 0
    # "3/5" for `kubectl get`: printer columns can only show a field as stored.
    step_label: str = ""
    step_started_at: str | None = None
    # When the current step's duration (an abTest's maxDuration) runs out.
    step_ends_at: str | None = None
    canary_weight: int = 0
    mirror_percent: int = 0
    verdict: Verdict | None = None
    # A manual action taken from the annotation, applied by the next reconcile.
    pending_action: Action | None = None
    last_action: Action | None = None
    # Why the rollout is paused; None when it is not.
    pause_reason: PauseReason | None = None
    candidate_ready: bool = False
    scale_down_at: str | None = None
    conditions: list[Condition] = []
    analysis: AnalysisStatus | None = None

    @field_validator("analysis", mode="wrap")
    @classmethod
    def _fresh_analysis_if_unreadable(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # A status from an older operator (an untyped blob) starts its step's analysis afresh.
        try:
            return handler(value)
        except ValidationError:
            return None
    decisions: Annotated[list[Decision], Field(max_length=MAX_DECISIONS)] = []
