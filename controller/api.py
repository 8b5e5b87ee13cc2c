"""The ModelRollout API (rollouts.mlops.dev/v1alpha1): the single source the CRD is generated from.

CRD fields are camelCase; Python names are snake_case, bridged by an alias
generator. Spec models are frozen and forbid unknown fields. Each admission rule is
written once, as CEL in `x-kubernetes-validations`: the CRD carries it to the apiserver,
and the models run the same rule in Python (`admission`), so the engine rejects the same
specs that admission rejects (a spec can predate a CRD upgrade), with the same message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

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

from controller import admission, profiles
from controller.admission import RULES, rule
from controller.durations import DURATION_PATTERN, parse_duration

GROUP = "rollouts.mlops.dev"
VERSION = "v1alpha1"
KIND = "ModelRollout"
PLURAL = "modelrollouts"
SINGULAR = "modelrollout"
SHORT_NAMES = ("mro",)

# The annotation through which kubectl (and the plugin) asks for a manual action.
ACTION_ANNOTATION = f"{GROUP}/action"
# On a Prometheus credentials Secret: the addresses its owner lets the operator send them to, and
# whether plain http:// is among the allowed ways.
PROMETHEUS_ADDRESSES_ANNOTATION = f"{GROUP}/prometheus-addresses"
ALLOW_PLAIN_HTTP_ANNOTATION = f"{GROUP}/allow-plain-http"
JUDGE_ADDRESSES_ANNOTATION = f"{GROUP}/judge-addresses"


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
    ROUTE = "route"  # the route's owner took the rule back: resumes when it is handed back
    GATEWAY = "gateway"  # the route's gateway rejects it: resumes when it accepts the route again


class RouteAcceptance(StrEnum):
    """Whether the route's gateways serve it, from their status and the route's (Gateway API only)."""

    ACCEPTED = "Accepted"  # every parent accepted the route and resolved its backends
    GATEWAY_NOT_ACCEPTED = "GatewayNotAccepted"  # a parent Gateway is not Accepted or not Programmed
    ROUTE_NOT_ACCEPTED = "RouteNotAccepted"  # a parent's controller rejected the route
    REFS_NOT_RESOLVED = "RefsNotResolved"  # a parent's controller cannot resolve the route's backends
    NOT_REPORTED = "NotReported"  # no controller has said either way (yet)


class RouteAccess(StrEnum):
    """Whether the rollout may write its route's rule (routers/ownership.py)."""

    MANAGED = "Managed"  # the rule sends traffic to the rollout's own -stable Service
    HANDED = "Handed"  # the route's owner names the rollout in its handed-to annotation
    NOT_OURS = "RouteNotOurs"  # neither: refused, nothing written
    TAKEN_BACK = "RouteTakenBack"  # we managed it, and its owner removed our Services from it


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

def _ruled(*rules: dict[str, JsonValue]) -> tuple[dict[str, JsonValue], AfterValidator]:
    """A field's admission rules: in its CRD schema, and run on its value by the model."""
    listed: list[JsonValue] = list(rules)

    def check(value: str) -> str:
        admission.check(listed, value)
        return value

    return {RULES: listed}, AfterValidator(check)


# Positive: a 0s interval would query in a loop, a 0s window would look at nothing.
_POSITIVE, _POSITIVE_CHECK = _ruled(rule("duration(self) > duration('0s')", "must be longer than 0s"))
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra=_POSITIVE),
                     _POSITIVE_CHECK]
# The analysis interval: every look costs queries, so a look at most once a second.
_SECOND, _SECOND_CHECK = _ruled(rule("duration(self) >= duration('1s')", "must be at least 1s"))
Interval = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra=_SECOND), _SECOND_CHECK]
# A DNS subdomain name (RFC 1123), as every Kubernetes object name: no path, no other namespace.
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A model name as servers spell them (fraud-scorer, meta-llama/Llama-3-8B, resnet50_v1@2): it goes into PromQL
# label matchers, so no quote, brace, backslash or space.
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
_URL, _URL_CHECK = _ruled(rule("isURL(self) && url(self).getHostname() != ''", "must be a valid http(s) URL"))
HttpURL = Annotated[str, Field(pattern=r"^https?://", max_length=2048, json_schema_extra=_URL), _URL_CHECK]
Percent = Annotated[int, Field(ge=0, le=100)]
MAX_STEPS = 64
METRIC_UNKNOWN = "abTest.metric must be conversion, success, or the name of one of analysis.metrics"


class SpecModel(BaseModel):
    # A field's docstring is its description in the CRD (kubectl explain).
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    @model_validator(mode="after")
    def _admission(self) -> Any:
        """The model's own admission rules, on the object as the apiserver sees it (defaults applied)."""
        extra = type(self).model_config.get("json_schema_extra")
        rules = extra.get(RULES) if isinstance(extra, dict) else None
        if isinstance(rules, list) and rules:
            admission.check(rules, self.model_dump(mode="json", by_alias=True, exclude_none=True))
        return self


# --- steps -----------------------------------------------------------------


# The JSONPath the comparator accepts: `$`, then fields (`.name`, `['any key']`), indices and wildcards.
JSON_PATH = r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*|\.\*|\[[0-9]+\]|\[\*\]|\['[^'\]]+'\])*$"
JsonPath = Annotated[str, Field(pattern=JSON_PATH, max_length=256)]


class DisagreementTest(SpecModel):
    """The candidate disagrees with the stable more often than the stable disagrees with itself."""

    max_excess: Annotated[float, Field(ge=0, le=1)] = 0.02
    """The excess tolerated: the candidate's disagreement rate minus the stable's own, 0-1 (default 0.02)."""
    on_breach: Literal["hold", "rollback"] = "hold"
    """hold (default: a better model is supposed to answer differently; a human decides, shown where the answers
    differ most) or rollback."""


class PairedLatencyTest(SpecModel):
    """The candidate is slower than the stable on the same request, on most requests."""

    relative_to_stable: Annotated[float, Field(gt=1, le=100)] = 1.2
    """Breach when the candidate takes more than this many times the stable's time on more than half of the
    compared requests (default 1.2)."""
    on_breach: Literal["hold", "rollback"] = "rollback"
    """rollback (default) or hold."""


class OutputDeltaTest(SpecModel):
    """The mean absolute numeric difference between the two answers."""

    max: Annotated[float, Field(gt=0)]
    """Breach when the mean absolute output delta is above this."""
    on_breach: Literal["hold", "rollback"] = "hold"
    """hold (default) or rollback."""


HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"


class Feedback(SpecModel):
    """POST /feedback on the comparator's admin port: labels (compare.labels) and human preferences
    (compare.judge.calibration), by request key, with a bearer token from a Secret. Each compared
    request's predictions and verdicts wait for them in a store on the comparator's volume."""

    token_secret_ref: SecretKeyRef
    """A Secret in the rollout's namespace whose key `token` is the bearer token /feedback requires."""
    max_per_second: Annotated[float, Field(gt=0, le=100_000)] = 1000
    """Labels and preferences accepted a second; more are answered 429 (default 1000)."""
    retention: Duration = "168h"
    """How long a compared request waits for its label or preference (default 168h, 7 days)."""
    max_entries: Annotated[int, Field(ge=1, le=100_000_000)] = 1_000_000
    """At most this many compared requests are kept; the oldest go first (default 1,000,000)."""


class LabelsTest(SpecModel):
    """Both models scored against labels that arrive later, on the same requests: the comparator keeps each
    compared request's two predictions under its key (compare.requestKey), labels are posted to its /feedback
    (compare.feedback), and a paired test on the requests only one model got right decides."""

    model_config = ConfigDict(json_schema_extra={RULES: [
        rule("self.task == 'ranking' || !has(self.k)", "k is a ranking's hit at k: only with task ranking", ".k"),
        rule("self.task == 'regression' || !has(self.tolerance)",
             "tolerance is a regression's: only with task regression", ".tolerance"),
        rule("self.task != 'regression' || has(self.maxError)",
             "a regression is judged on its absolute errors: set maxError, the largest error difference counted "
             "(larger ones are clipped to it)", ".maxError"),
        rule("self.task == 'regression' || (!has(self.maxError) && !has(self.maxIncrease))",
             "maxError and maxIncrease are a regression's: only with task regression", ".maxError"),
    ]})

    prediction: JsonPath | None = None
    """Where an answer's prediction is, e.g. $.label (required with format json; v2: the first output's first
    element by default)."""
    task: Literal["classification", "regression", "ranking"] = "classification"
    """classification: right when the prediction is the label; regression: within tolerance of it; ranking:
    the label is among the first k items of the prediction (a hit at k)."""
    k: Annotated[int, Field(ge=1, le=1000)] | None = None
    """ranking: the hit's depth (default 10)."""
    tolerance: Annotated[float, Field(ge=0)] | None = None
    """regression: an absolute error this small is right (default 0: exact)."""
    max_drop: Annotated[float, Field(ge=0, lt=1)] = 0.01
    """classification, ranking: breach when the candidate's accuracy is shown below the stable's by more than this
    (default 0.01)."""
    max_error: Annotated[float, Field(gt=0)] | None = None
    """regression (required): the largest difference between the two models' absolute errors on one request that
    counts; larger ones are clipped to it. The paired test's resolution is maxError / 20."""
    max_increase: Annotated[float, Field(ge=0)] | None = None
    """regression: breach when the candidate's mean absolute error is shown above the stable's by more than this
    (default 0), on the same requests."""
    window: Duration | None = None
    """Score each request once this long has passed since it, with its label if one came by then (left out if
    not). Without a window a request is scored when its label arrives, which is valid only when how late a label
    comes does not depend on which model was right (chargebacks do: set a window)."""
    on_breach: Literal["hold", "rollback"] = "hold"
    """hold (default) or rollback."""


class JudgeTest(SpecModel):
    """A judge model (an OpenAI-compatible endpoint) compares the stable's and the candidate's answers to the
    same prompt, blind: shown as A and B in a random order. A sign test on its preferences (ties excluded)
    decides."""

    model_config = ConfigDict(json_schema_extra={RULES: [
        rule("!has(self.prompt) || (self.prompt.contains('{question}') && self.prompt.contains('{answer_a}') && "
             "self.prompt.contains('{answer_b}'))",
             "the prompt must hold {question}, {answer_a} and {answer_b}, and ask for [[A]], [[B]] or [[C]] (a tie)",
             ".prompt"),
    ]})

    url: Annotated[HttpURL, Field(max_length=512)]  # shorter than HttpURL's: the root rule's cost budget
    """The judge's base URL; the comparator posts to <url>/v1/chat/completions. It must not be the rollout's own
    Services (<name>, <name>-stable, <name>-candidate): a model cannot judge itself."""
    model: Annotated[str, Field(min_length=1, max_length=253)]
    """The judge's model name, sent as `model`; it must not be spec.model."""
    prompt: Annotated[str, Field(max_length=8192)] | None = None
    """The judge's instructions, with {question}, {answer_a} and {answer_b}; it answers [[A]], [[B]] or [[C]] for a
    tie (default: MT-Bench's pairwise prompt, Zheng et al. 2023)."""
    secret_ref: SecretKeyRef | None = None
    """A Secret whose key `token` is sent as the judge's bearer token. Its annotation
    rollouts.mlops.dev/judge-addresses must list this url; otherwise the comparison is blocked."""
    max_requests_per_second: Annotated[float, Field(gt=0, le=1000)] = 2
    """At most this many judge calls a second; compared pairs beyond it are not judged, and counted (default 2)."""
    budget: Annotated[int, Field(ge=1, le=10_000_000)] = 5000
    """At most this many judge calls in the step, swapped asks included (default 5000)."""
    swap_percent: Annotated[int, Field(ge=0, le=100)] = 10
    """Percent of judged pairs asked a second time in the other order, to measure position bias (default 10)."""
    timeout: Duration = "30s"
    """How long a judge call may take; longer is counted, never guessed (default 30s)."""
    # Inclusive: the apiserver checks a whole number against an exclusive fractional bound as if the bound
    # were whole (0 < 0.5 read as 0 < 0), refusing the default.
    margin: Annotated[float, Field(ge=0, le=0.49)] = 0.0
    """Breach when the judge prefers the stable on more than 1/2 + margin of the pairs it decides (default 0)."""
    calibration: bool = False
    """Correct the judge's preference rate toward humans': preferences posted to /feedback
    (`{"key": ..., "kind": "preference", "label": "stable" | "candidate" | "tie"}`) for judged requests
    (prediction-powered inference, Angelopoulos et al. 2023). Needs compare.requestKey and compare.feedback."""
    on_breach: Literal["hold", "rollback"] = "hold"
    """hold (default) or rollback."""


class Compare(SpecModel):
    """Compare what the two models answer to the same mirrored requests (a comparator between the mirror and
    both models; users are still answered by the stable alone)."""

    model_config = ConfigDict(json_schema_extra={RULES: [
        rule("self.format == 'json' || (!has(self.paths) && !has(self.ignore))",
             "paths and ignore select fields of JSON answers: only with format json", ".paths"),
        rule("self.format == 'v2' || !has(self.argmax)", "argmax compares v2 class scores: only with format v2",
             ".argmax"),
        rule("self.format == 'openai' || !has(self.minSimilarity)",
             "minSimilarity compares generated texts: only with format openai", ".minSimilarity"),
        rule("!has(self.outputDelta) || self.format in ['json', 'v2']",
             "outputDelta needs numbers in the answers: only with format json or v2", ".outputDelta"),
        rule("!has(self.labels) || self.format in ['json', 'v2']",
             "labels score predictions read from the answers: only with format json or v2", ".labels"),
        rule("!has(self.labels) || self.format != 'json' || has(self.labels.prediction)",
             "with format json, labels.prediction must say where an answer's prediction is", ".labels"),
        rule("!(has(self.requestKey) && has(self.requestKeyPath))",
             "name the request by a header (requestKey) or by a JSONPath into its body (requestKeyPath), not both",
             ".requestKey"),
        rule("!has(self.labels) || ((has(self.requestKey) || has(self.requestKeyPath)) && has(self.feedback))",
             "labels are posted to /feedback by request: set requestKey (or requestKeyPath) and feedback",
             ".labels"),
        rule("!has(self.judge) || self.format == 'openai'", "a judge compares generated texts: only with format "
             "openai", ".judge"),
        rule("!has(self.judge) || !self.judge.calibration || ((has(self.requestKey) || has(self.requestKeyPath)) "
             "&& has(self.feedback))",
             "judge.calibration takes human preferences posted to /feedback by request: set requestKey (or "
             "requestKeyPath) and feedback", ".judge.calibration"),
    ]})

    format: Literal["json", "v2", "openai", "bytes"]
    """How answers are compared: json (fields by JSONPath, numbers within a tolerance), v2 (the Open Inference
    Protocol's output tensors, or KServe v1 predictions), openai (completions: text similarity and finish
    reason, or logprob closeness), bytes (byte equality)."""
    paths: Annotated[list[JsonPath], Field(max_length=32)] | None = None
    """json: the fields compared, as JSONPaths such as $.label or $.scores[*] (default: the whole answer)."""
    ignore: Annotated[list[JsonPath], Field(max_length=32)] | None = None
    """json: fields never compared, e.g. $.id or $.created."""
    absolute_tolerance: Annotated[float, Field(ge=0)] = 0.0
    """Numbers this close are the same (json, v2)."""
    relative_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Numbers this close relative to the larger are the same (json, v2)."""
    argmax: bool | None = None
    """v2: class scores agree when each row's largest score is the same class."""
    min_similarity: Annotated[float, Field(ge=0, le=1)] | None = None
    """openai: texts at least this alike (normalised Indel similarity, default 0.9) are the same."""
    noise_percent: Annotated[int, Field(ge=1, le=100)] = 20
    """Percent of compared requests the stable answers a second time, to measure its own nondeterminism."""
    max_requests_per_second: Annotated[float, Field(gt=0, le=10000)] = 10
    """At most this many compared requests a second; the stable answers one or two copies of each (default 10).
    Mirrored requests beyond it are counted and dropped."""
    timeout: Duration = "5s"
    """How long an answer may take before it is cut and counted (default 5s)."""
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 << 20)] = 1 << 20
    """Answers and requests larger than this are not compared, and are counted (default 1 MiB)."""
    allow_side_effects: bool = False
    """Replay every method; by default only GET, HEAD, OPTIONS and POSTs to the format's inference paths."""
    samples: Annotated[int, Field(ge=0, le=1000)] = 0
    """Keep the last N disagreements in the comparator's memory for `kubectl modelrollout diff` (default 0)."""
    redact: Annotated[list[JsonPath], Field(max_length=32)] | None = None
    """Fields a kept sample never shows, as JSONPaths."""
    pass_when: Literal["duration", "noWorse"] = "duration"  # noqa: S105 (not a password)
    """duration (default): the step runs its duration; noWorse: it ends as soon as the candidate is shown to
    disagree no more than the stable does plus disagreement.maxExcess, and, where set, to be no less accurate than
    labels.maxDrop allows and no less preferred by the judge than its margin allows."""
    disagreement: DisagreementTest = DisagreementTest()
    """The disagreement test (always on)."""
    paired_latency: PairedLatencyTest | None = None
    """The paired latency test (off unless set)."""
    output_delta: OutputDeltaTest | None = None
    """The output delta test (off unless set; json and v2)."""
    request_key: Annotated[str, Field(pattern=HEADER_NAME, max_length=256)] | None = None
    """The request header whose value names each compared request, e.g. x-request-id: /feedback posts labels and
    preferences by it."""
    request_key_path: JsonPath | None = None
    """Or a JSONPath into the request's body, e.g. $.id."""
    feedback: Feedback | None = None
    """The comparator's /feedback, for labels and the judge's calibration."""
    labels: LabelsTest | None = None
    """Score both models against labels posted later (off unless set; json and v2)."""
    judge: JudgeTest | None = None
    """A judge model prefers one of the two answers, blind (off unless set; openai)."""

    @property
    def takes_feedback(self) -> bool:
        """Whether labels or human preferences may arrive after the step ends (and count toward it)."""
        return self.labels is not None or (self.judge is not None and self.judge.calibration)

    @property
    def ends_early(self) -> bool:
        """Whether the step ends as soon as noWorse decides."""
        return self.pass_when == "noWorse"  # noqa: S105 (a policy, not a password)


class ShadowStep(SpecModel):
    """Mirror a share of live traffic to the candidate; responses to users still come from the stable."""

    percent: Percent = 100
    """Percent of live requests mirrored to the candidate, 0-100 (default 100). Users always get the stable's answer."""
    duration: Duration
    """How long the step runs, a duration such as 30s, 10m or 1h30m."""
    compare: Compare | None = None
    """Compare the two models' answers to the mirrored requests, with anytime-valid tests of their
    disagreement (and optionally of paired latency and output deltas)."""


class CanaryStep(SpecModel):
    """Send `weight` percent of live traffic to the candidate."""

    weight: Percent
    """Percent of live traffic the candidate serves, 0-100; weights never decrease from step to step."""
    duration: Duration | None = None
    """How long the step runs (30s, 10m, 1h30m); without one the step advances at once, or when its analysis allows."""


class HeaderMatch(SpecModel):
    """Requests carrying this header value always reach the candidate (an A/B cohort)."""

    name: Annotated[str, Field(pattern=HEADER_NAME, max_length=256)]
    """The HTTP header's name, e.g. x-experiment."""
    value: Annotated[str, Field(min_length=1, max_length=4096)]
    """The header value that routes a request to the candidate."""


class ABTestStep(SpecModel):
    """Split traffic and run until a statistically valid verdict, or `maxDuration`."""

    weight: Percent = 50
    """Percent of live traffic the candidate serves during the test (default 50)."""
    header_route: HeaderMatch | None = None
    """Requests with this header always reach the candidate, on top of the weight (an opt-in cohort); not with
    trafficRouting.replicas."""
    max_duration: Duration
    """The longest the test may run (30m, 24h); at the end without a verdict, onInconclusive decides."""
    min_duration: Duration | None = None
    """A verdict of better or no difference waits at least this long (a duration), e.g. to cover a weekly cycle; a
    worse verdict acts at once."""
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
    """What happens at maxDuration without a verdict: promote, rollback, or pause (the default) for a human."""


class PauseStep(SpecModel):
    """A manual gate; with a duration it resumes by itself."""

    duration: Duration | None = None
    """Resume by itself after this long (a duration); without one the step waits for `kubectl annotate ...
    rollouts.mlops.dev/action=promote`."""


STEP_KINDS = ("shadow", "canary", "abTest", "pause")


class Step(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            RULES: [
                rule(
                    "[has(self.shadow), has(self.canary), has(self.abTest), has(self.pause)]"
                    ".filter(x, x).size() == 1",
                    "each step must set exactly one of shadow, canary, abTest or pause",
                )
            ]
        }
    )

    shadow: ShadowStep | None = None
    """Mirror traffic to the candidate and compare the two models' outputs."""
    canary: CanaryStep | None = None
    """Send a share of live traffic to the candidate."""
    ab_test: ABTestStep | None = Field(default=None, alias="abTest")
    """Split traffic and run a sequential A/B test until a verdict or maxDuration."""
    pause: PauseStep | None = None
    """Wait: for a human (no duration) or for a while."""

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


class Capacity(SpecModel):
    policy: Literal["surge", "wait", "swap"] = "surge"
    """What to do when the candidate's extended resources (nvidia.com/gpu, ...) are not free on the nodes its
    template can land on: surge (the default) reports InsufficientCapacity and creates nothing until they are;
    wait does the same and gives up after timeout (rolled back, reason CapacityTimeout). Checked before the
    candidate is created, when the operator watches nodes (cluster-wide installs). swap, for clusters without
    spare GPUs, makes room instead: the stable is scaled down by exactly the candidate's size before the
    candidate grows, its replicas follow its traffic share from step to step, and an abort or rollback gives
    the stable back its full size (gatewayAPI or istio only)."""
    timeout: Duration = "30m"
    """wait: how long to wait for capacity (default 30m)."""
    min_available: Annotated[int, Field(ge=1, le=1000)] = 1
    """swap: the stable replicas that always stay while the stable serves (default 1); every step's weight must
    leave at least this many."""


class Warmup(SpecModel):
    """Before any live request reaches a Ready candidate, a share of live traffic is mirrored to it (copies:
    users are answered by the stable) until its latency is under maxLatency; a model that loads or compiles
    on its first requests is cold there, and no user should wait for that."""

    max_latency: Duration
    """The candidate's p95 latency over its warm-up requests (the last analysis window of them) must be under
    this, e.g. 500ms; read from its latency histogram, the analysis profile's."""
    requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    """How many warm-up requests that window must hold before it counts (default 20)."""
    mirror_percent: Annotated[int, Field(ge=1, le=100)] = 10
    """Percent of live traffic mirrored to the candidate while it warms up (default 10)."""
    timeout: Duration = "10m"
    """Not warm by then: rolled back, reason WarmupFailed (default 10m)."""


class Strategy(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            RULES: [
                rule(
                    "self.steps.filter(s, has(s.canary) || has(s.abTest))"
                    ".map(s, has(s.canary) ? s.canary.weight : s.abTest.weight).isSorted()",
                    "canary and abTest weights must not decrease from one step to the next",
                    ".steps",
                )
            ]
        }
    )

    steps: Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS)]
    """The steps in order, 1 to 64; each sets exactly one of shadow, canary, abTest or pause."""
    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] = 1800
    """Seconds the old stable stays running after a promotion, so that undo is one route write (default 1800, at most 7
    days)."""
    capacity: Capacity = Capacity()
    """GPU capacity: check it before creating the candidate, and what to do when it is missing."""
    warmup: Warmup | None = None
    """A warm-up gate between the candidate's readiness and its first step (gatewayAPI or istio): mirrored
    requests until its latency is under warmup.maxLatency."""

# --- routing ---------------------------------------------------------------


class GatewayAPIRouting(SpecModel):
    http_route: Annotated[str, Field(min_length=1, max_length=253)]
    """The HTTPRoute, in the rollout's namespace, whose rule sends traffic to the <name>-stable Service."""
    rule_name: str | None = None
    """The rule to manage, by its name; by default the rule whose backendRefs name <name>-stable."""


class IstioRouting(SpecModel):
    virtual_service: Annotated[str, Field(min_length=1, max_length=253)]
    """The VirtualService, in the rollout's namespace, whose http route sends traffic to <name>-stable."""
    route_name: str | None = None
    """The http route to manage, by its name; by default the one that routes to <name>-stable."""


class ReplicasRouting(SpecModel):
    pass


class TrafficRouting(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            RULES: [
                rule(
                    "[has(self.gatewayAPI), has(self.istio), has(self.replicas)].filter(x, x).size() == 1",
                    "set exactly one routing mode: gatewayAPI, istio or replicas",
                )
            ]
        }
    )

    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")
    """Weights, mirroring and header matches on a Gateway API HTTPRoute."""
    istio: IstioRouting | None = None
    """Weights, mirroring and header matches on an Istio VirtualService."""
    replicas: ReplicasRouting | None = None
    """No mesh: the weight is approximated by the candidate's share of replicas; no mirroring and no header routing."""

    @property
    def mode(self) -> Literal["gatewayAPI", "istio", "replicas"]:
        if self.gateway_api is not None:
            return "gatewayAPI"
        if self.istio is not None:
            return "istio"
        return "replicas"


# --- analysis --------------------------------------------------------------


class SecretKeyRef(SpecModel):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_NAME)]
    """The Secret's name, in the rollout's namespace."""


class PrometheusSource(SpecModel):
    address: HttpURL
    """The Prometheus base URL, e.g. http://prometheus.monitoring:9090."""
    secret_ref: SecretKeyRef | None = None
    """A Secret with optional keys token (bearer), username and password (basic auth), and ca.crt (PEM).
    Its annotation rollouts.mlops.dev/prometheus-addresses must list this address, and plain http://
    also needs rollouts.mlops.dev/allow-plain-http: "true"; otherwise nothing is sent."""


GuardrailTemplate = Literal[
    "errorRate", "latencyP50", "latencyP95", "latencyP99", "timeToFirstTokenP95", "timeToFirstTokenP99",
    "interTokenLatencyP95", "interTokenLatencyP99", "endToEndLatencyP95", "endToEndLatencyP99",
    "queueDepth", "kvCacheUsage", "tokensPerSecond", "gpuMemoryUsage", "predictionPSI",
]
Profile = Literal["seeds", "vllm", "tgi", "sglang", "triton", "kserve", "mlserver", "torchserve", "inference-gateway"]
GatewayProfile = Literal["envoy", "istio"]
# The guardrail templates that are sequential tests of the candidate against the stable.
TEST_TEMPLATES = ("errorRate", *profiles.HISTOGRAM_TEMPLATES)
IGNORE_BELOW_NEEDS_A_TEST = ("ignoreBelow is the floor of a test template (errorRate, the latency quantiles); "
                             "a threshold has max and min")
# Profiles whose server counts no failed requests: no errorRate, no `success` metric.
NO_REQUEST_COUNTERS = tuple(name for name in profiles.PROFILES if "errorRate" in profiles.unsupported(name))
SUCCESS_NEEDS_COUNTERS = ("the success template counts failed requests, which analysis.profile's server does not "
                          f"count ({', '.join(NO_REQUEST_COUNTERS)}): define a metric with successes and trials "
                          "queries, e.g. on the gateway's response codes")
CONVERSION_NEEDS_SEEDS = ("the conversion template counts model_conversions_total, which only the seeds profile "
                          "exports: define a metric with successes and trials queries")


def _profile_rules() -> list[JsonValue]:
    """One CEL rule per profile: no guardrail template its server does not export."""
    rules: list[JsonValue] = []
    for name in profiles.PROFILES:
        missing = profiles.unsupported(name)
        if missing:
            listed = ", ".join(f"'{template}'" for template in missing)
            rules.append(rule(
                f"(has(self.profile) ? self.profile : 'seeds') != '{name}' || has(self.gatewayProfile) || "
                f"!has(self.guardrails) || self.guardrails.all(g, !has(g.template) || !(g.template in [{listed}]))",
                profiles.why_unsupported(name), ".guardrails"))
    rules.append(rule(
        "(has(self.profile) ? self.profile : 'seeds') == 'seeds' || !has(self.metrics) || "
        "self.metrics.all(m, !has(m.template) || m.template != 'conversion')", CONVERSION_NEEDS_SEEDS, ".metrics"))
    rules.append(rule(
        f"!((has(self.profile) ? self.profile : 'seeds') in {list(NO_REQUEST_COUNTERS)}) || has(self.gatewayProfile) "
        "|| !has(self.metrics) || "
        "self.metrics.all(m, !has(m.template) || m.template != 'success')", SUCCESS_NEEDS_COUNTERS, ".metrics"))
    return rules


def _gateway_rules() -> list[JsonValue]:
    """With a gateway profile, the templates it measures are allowed whatever the server exports."""
    rules: list[JsonValue] = []
    for name in profiles.PROFILES:
        for gateway in profiles.GATEWAYS:
            missing = profiles.unsupported(name, gateway)
            if not missing:
                continue
            listed = ", ".join(f"'{template}'" for template in missing)
            rules.append(rule(
                f"(has(self.profile) ? self.profile : 'seeds') != '{name}' || !has(self.gatewayProfile) || "
                f"self.gatewayProfile != '{gateway}' || !has(self.guardrails) || "
                f"self.guardrails.all(g, !has(g.template) || !(g.template in [{listed}]))",
                profiles.why_unsupported(name, gateway), ".guardrails"))
    return rules


class Guardrail(SpecModel):
    """A check at every analysis run.

    errorRate, latencyP99 and latencyP95 are sequential tests of the candidate against the stable:
    the step rolls back once the candidate's errors (or requests slower than the stable's p99/p95)
    outrun the stable's by more than `relativeToStable` (default 1: any excess) beyond doubt, within
    this guardrail's share of analysis.alpha; `ignoreBelow` is a floor of practical significance: no
    rollback from the test while the candidate's value over analysis.window stays at or under it.
    `max` is a ceiling everywhere: above it the guardrail breaches by itself, after failureLimit
    breaches in a row. A custom `query` and the other templates are thresholds: the value over the
    window against max, min and relativeToStable x the stable's, acting after failureLimit breaches in a row.
    """

    model_config = ConfigDict(
        json_schema_extra={
            RULES: [
                rule("has(self.template) != has(self.query)", "set exactly one of template or query"),
                rule(
                    "has(self.max) || has(self.min) || has(self.relativeToStable) || has(self.ignoreBelow)",
                    "a guardrail needs a bound: max, min, relativeToStable or ignoreBelow",
                ),
                rule(f"!has(self.ignoreBelow) || (has(self.template) && self.template in {list(TEST_TEMPLATES)})",
                     IGNORE_BELOW_NEEDS_A_TEST, ".ignoreBelow"),
                rule("!has(self.countsErrors) || !self.countsErrors || has(self.query)",
                     "countsErrors describes a query; a template says what it counts itself", ".countsErrors"),
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=63)]
    """The guardrail's name, shown in status and in rollback messages."""
    template: GuardrailTemplate | None = None
    """A built-in measurement, on the metric names of analysis.profile. Sequential tests against the stable:
    errorRate, latencyP50/P95/P99, timeToFirstTokenP95/P99, interTokenLatencyP95/P99, endToEndLatencyP95/P99.
    Bounds on the value over the window: queueDepth, kvCacheUsage (0-1), gpuMemoryUsage (0-1, DCGM),
    tokensPerSecond (decode speed of one request: 1 / mean inter-token latency), predictionPSI (drift of the
    prediction histogram; a PSI over max breaches only when the histograms also differ beyond chance, KS p < 0.0001,
    since few predictions inflate PSI). Set this or query."""
    query: Annotated[str, Field(max_length=4096)] | None = None
    """A PromQL query for one number, with {{model}}, {{version}}, {{namespace}} and {{window}} filled in; run for each
    model. Set this or template."""
    counts_errors: bool = False
    """For a query: it measures failed requests (e.g. the gateway's 5xx rate). Where analysis.profile counts no
    failures (kserve), such a guardrail is what keeps the ErrorsUnwatched condition away."""
    max: float | None = None
    """Ceiling of the candidate's value over the window (an error rate as a fraction, a latency in seconds): above it
    the guardrail breaches by itself, whatever the stable does, after failureLimit breaches in a row."""
    ignore_below: Annotated[float, Field(ge=0)] | None = None
    """For a test template (errorRate, the latency quantiles): a floor of practical significance. The test rolls
    nothing back while the candidate's value over the window is at or under it. (Before v0.2, `max` meant this.)"""
    min: float | None = None
    """Lower bound of the value over the window (threshold guardrails)."""
    relative_to_stable: Annotated[float, Field(gt=0)] | None = None
    """The candidate may be at most this many times the stable: for errorRate the tolerated error-rate ratio, for
    latency the p99/p95 ratio (default 1 for tests)."""
    failure_limit: Annotated[int, Field(ge=0)] = 0
    """Breaches in a row a threshold guardrail tolerates; the next one acts (default 0). Test templates act on their
    verdict."""
    during: Annotated[list[Literal["shadow", "canary", "abTest", "pause"]], Field(max_length=4)] | None = None
    """The step kinds this guardrail runs in (shadow, canary, abTest, pause); all of them by default."""
    on_breach: Literal["rollback", "hold"] | None = None
    """rollback, or hold the step; by default predictionPSI holds (a better model may predict differently) and the
    others roll back."""

class Metric(SpecModel):
    """A rate an abTest step judges: successes over trials, from PromQL counters or a built-in template.

    Built-ins: `conversion` (model_conversions_total over ok requests) and `success`
    (ok requests over all requests). Queries may use {{model}}, {{version}}, {{namespace}} and
    {{window}} (the step's sample so far), e.g. `sum(increase(clicks_total{version="{{version}}"}[{{window}}]))`.
    """

    model_config = ConfigDict(
        json_schema_extra={
            RULES: [
                rule("has(self.template) != (has(self.successes) && has(self.trials))",
                     "set either template, or both successes and trials"),
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=63)]
    """The name abTest.metric refers to."""
    template: Literal["conversion", "success"] | None = None
    """A built-in: conversion (model_conversions_total over ok requests) or success (ok requests over all). Set this,
    or both successes and trials."""
    successes: Annotated[str, Field(max_length=4096)] | None = None
    """PromQL for the successes counter of {{version}}: its total, or with {{window}} its increase since the
    last look."""
    trials: Annotated[str, Field(max_length=4096)] | None = None
    """PromQL for the trials counter of {{version}}, read the same way as successes."""
    higher_is_better: bool = True
    """Whether a higher rate is better (default true): it decides which way is CandidateBetter."""

class Analysis(SpecModel):
    model_config = ConfigDict(json_schema_extra={RULES: _profile_rules() + _gateway_rules()})

    profile: Profile = "seeds"
    """The model server whose metric names the built-in templates read: seeds (the default), vllm, tgi, sglang,
    triton, kserve, mlserver, torchserve or inference-gateway. A template the server does not export is
    rejected here. Versions are told apart by the `version` label, copied from the pods' label by
    Prometheus relabelling (see the README)."""
    gateway_profile: GatewayProfile | None = None
    """Read errorRate and the request-latency templates (latencyP50/P95/P99) from the gateway instead of the
    server, for any server: envoy (Envoy Gateway's Envoy, with mergeBackends: one cluster per backend Service)
    or istio (Istio's standard metrics, reporter destination). Time to first token, inter-token latency, queue,
    KV cache and predictions stay the server's. The gateway's proxies must be scraped by the same Prometheus
    (see the README)."""
    prometheus: PrometheusSource | None = None
    """Where the metrics are. Without it, the operator's own Prometheus (`modelrollout run
    --prometheus-address`, the chart's prometheus.address); with neither, a step with guardrails or an
    abTest holds with an AnalysisError condition."""
    # Family-wise: the chance that a step whose candidate is no worse is rolled back by any of
    # its statistical guardrails (errorRate, latencyP99, latencyP95), split between them.
    alpha: Annotated[float, Field(gt=0, lt=0.5, description=(
        "The chance that the statistical guardrails (errorRate, latencyP99, latencyP95) roll back a step "
        "whose candidate is no worse than the stable, across all of them."))] = 0.05
    interval: Interval = "10s"
    """How often the analysis looks (default 10s, at least 1s)."""
    window: Duration = "1m"
    """The look-back of windowed values: threshold guardrails and the values shown for test guardrails (default 1m);
    never before the step started."""
    guardrails: Annotated[list[Guardrail], Field(max_length=32)] = []
    """Checks at every look; a breach rolls back (or holds). At most 32."""
    metrics: Annotated[list[Metric], Field(max_length=32)] = []
    """Named rates an abTest step can judge. At most 32."""
    error_limit: Annotated[int, Field(ge=1)] = 3
    """Looks in a row without data (or with failing queries) before onError acts (default 3)."""
    on_error: Literal["pause", "rollback"] = "pause"
    """What errorLimit does: pause until measurements return (the default), or roll back."""

    def errors_unwatched(self) -> str | None:
        """Why failed requests go unseen by this analysis (None: a guardrail counts them, or could)."""
        if (self.profile not in NO_REQUEST_COUNTERS or self.gateway_profile is not None
                or any(g.counts_errors for g in self.guardrails)):
            return None
        return (f"analysis.profile {self.profile} counts no failed requests, and no query guardrail has "
                "countsErrors: a candidate that fails requests is not rolled back. Add a query guardrail on the "
                "gateway's response codes with countsErrors: true")


# --- notifications and cost ---------------------------------------------------


class NotificationEvent(StrEnum):
    STARTED = "Started"
    STEP_COMPLETED = "StepCompleted"
    PAUSED = "Paused"
    ANALYSIS_HALTED = "AnalysisHalted"
    ROLLED_BACK = "RolledBack"
    COMPLETED = "Completed"
    UNDONE = "Undone"


class Receiver(SpecModel):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    """The receiver's name, shown in Events when a delivery fails."""
    type: Literal["webhook", "slack"]
    """webhook: a JSON body with every field; slack: a Slack-compatible incoming webhook (text and blocks)."""
    secret_ref: SecretKeyRef
    """A Secret in the rollout's namespace with key `url` (the endpoint) and, for webhook, an optional `token`
    sent as a bearer token. Neither is ever logged or written to status or Events."""
    events: Annotated[list[NotificationEvent], Field(max_length=7)] | None = None
    """Which transitions to send (Started, StepCompleted, Paused, AnalysisHalted, RolledBack, Completed,
    Undone); all of them by default."""


class Notifications(SpecModel):
    receivers: Annotated[list[Receiver], Field(min_length=1, max_length=8)]
    """Where transitions go, each with the verdict and the numbers behind it. At most 8."""


class Cost(SpecModel):
    gpu_hourly_cost: Annotated[float, Field(ge=0)]
    """Dollars per hour of one GPU of the template's type, e.g. 1.01 for an A10G, 3.67 for an A100."""
    utilization: Annotated[float, Field(gt=0, le=1)] = 0.7
    """The average GPU utilization the effective cost per request assumes (default 0.7, as in the calculator)."""


class ServicePort(SpecModel):
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """The port of the <name>-stable and <name>-candidate Services (default 8080)."""
    target_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """The container port they send to (default: port)."""


WARMUP_NEEDS_MIRROR = ("strategy.warmup mirrors requests to the candidate, which trafficRouting.replicas cannot do: "
                       "use gatewayAPI or istio")
_NO_LATENCY = sorted(name for name, chosen in profiles.PROFILES.items() if chosen.latency is None)
WARMUP_NEEDS_LATENCY = (f"strategy.warmup reads a request latency histogram, which analysis.profile "
                        f"{' and '.join(_NO_LATENCY)} do not export: set analysis.gatewayProfile to read the gateway's")
SWAP_NEEDS_ROUTING = ("capacity.policy swap needs gatewayAPI or istio: with trafficRouting.replicas every pod "
                      "takes traffic, so the stable's share cannot follow its size")
SWAP_LEAVES_TOO_FEW = ("capacity.policy swap: every step must leave the stable at least minAvailable replicas, "
                       "after giving the candidate ceil(replicas * weight / 100) of them (at least one)")
_SWAP = "has(self.strategy.capacity) && has(self.strategy.capacity.policy) && self.strategy.capacity.policy == 'swap'"
_MIN_AVAILABLE = "(has(self.strategy.capacity.minAvailable) ? self.strategy.capacity.minAvailable : 1)"
_STEP_WEIGHT = "(has(s.canary) ? s.canary.weight : has(s.abTest) ? (has(s.abTest.weight) ? s.abTest.weight : 50) : 0)"
# ceil(replicas * weight / 100), at least one: capacity.swap_candidate in CEL's integer arithmetic.
_SWAP_CANDIDATE = (f"((self.replicas * {_STEP_WEIGHT} + 99) / 100 > 1 ? "
                   f"(self.replicas * {_STEP_WEIGHT} + 99) / 100 : 1)")


class ModelRolloutSpec(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            RULES: [
                rule(
                    "!has(self.trafficRouting.replicas) || !self.strategy.steps.exists(s, has(s.shadow))",
                    "a shadow step (and its compare) mirrors traffic, which trafficRouting.replicas cannot do: "
                    "use gatewayAPI or istio, or drop the shadow step",
                    ".strategy.steps",
                ),
                rule(
                    "!self.strategy.steps.exists(s, has(s.shadow) && has(s.shadow.compare) && "
                    "has(s.shadow.compare.judge) && s.shadow.compare.judge.model == self.model)",
                    "compare.judge.model is spec.model: a model cannot judge its own answers",
                    ".strategy.steps",
                ),
                rule(
                    "!has(self.trafficRouting.replicas) || "
                    "!self.strategy.steps.exists(s, has(s.abTest) && has(s.abTest.headerRoute))",
                    "abTest.headerRoute routes by header, which trafficRouting.replicas cannot do",
                    ".strategy.steps",
                ),
                rule(
                    "!has(self.analysis) || (has(self.analysis.profile) ? self.analysis.profile : 'seeds') == 'seeds'"
                    " || !self.strategy.steps.exists(s, has(s.abTest) && has(s.abTest.metric) && "
                    "s.abTest.metric == 'conversion' && !(has(self.analysis.metrics) && "
                    "self.analysis.metrics.exists(m, m.name == 'conversion')))",
                    CONVERSION_NEEDS_SEEDS,
                    ".strategy.steps",
                ),
                rule("!has(self.strategy.warmup) || !has(self.trafficRouting.replicas)", WARMUP_NEEDS_MIRROR,
                     ".strategy.warmup"),
                rule("!has(self.strategy.warmup) || !has(self.analysis) || !has(self.analysis.profile) || "
                     f"has(self.analysis.gatewayProfile) || !(self.analysis.profile in {_NO_LATENCY})",
                     WARMUP_NEEDS_LATENCY, ".strategy.warmup"),
                rule(f"{_SWAP} ? !has(self.trafficRouting.replicas) : true", SWAP_NEEDS_ROUTING,
                     ".strategy.capacity.policy"),
                rule(f"{_SWAP} ? {_MIN_AVAILABLE} < self.replicas && self.strategy.steps.all(s, "
                     f"{_STEP_WEIGHT} >= 100 || self.replicas - {_SWAP_CANDIDATE} >= {_MIN_AVAILABLE}) : true",
                     SWAP_LEAVES_TOO_FEW, ".strategy.capacity.minAvailable"),
                rule(
                    f"!has(self.analysis) || !has(self.analysis.profile) || !(self.analysis.profile in "
                    f"{list(NO_REQUEST_COUNTERS)}) || self.strategy.steps.all(s, !has(s.abTest) || "
                    "!has(s.abTest.metric) || s.abTest.metric != 'success' || (has(self.analysis.metrics) && "
                    "self.analysis.metrics.exists(m, m.name == 'success')))",
                    SUCCESS_NEEDS_COUNTERS,
                    ".strategy.steps",
                ),
                rule(
                    "has(self.analysis) || !self.strategy.steps.exists(s, has(s.shadow) && has(s.shadow.compare))",
                    "a shadow step's compare is judged from the comparator's counts in Prometheus: set "
                    "spec.analysis (analysis: {} reads the operator's own Prometheus)",
                    ".strategy.steps",
                ),
                rule(
                    "self.strategy.steps.all(s, !has(s.abTest) || !has(s.abTest.metric) || "
                    "s.abTest.metric in ['conversion', 'success'] || (has(self.analysis) && "
                    "has(self.analysis.metrics) && self.analysis.metrics.exists(m, m.name == s.abTest.metric)))",
                    METRIC_UNKNOWN,
                    ".strategy.steps",
                ),
            ]
        }
    )

    model: Annotated[str, Field(min_length=1, max_length=253, pattern=MODEL_NAME)]
    """The value of the `model` label in metric queries: letters, digits and . _ : / @ + - (e.g.
    meta-llama/Llama-3-8B-Instruct)."""
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Replicas of each model version (1-1000, default 1)."""
    template: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """The pod template of the model server (image, model URI, nvidia.com/gpu resources). Changing it
    starts a rollout."""
    service: ServicePort = ServicePort()
    """The Services the operator makes for the two versions."""
    traffic_routing: TrafficRouting
    """How traffic reaches the two versions: exactly one of gatewayAPI, istio or replicas."""
    strategy: Strategy
    """The steps a new template goes through."""
    analysis: Analysis | None = None
    """Measurements and tests that decide by themselves: guardrails, A/B metrics, the Prometheus to read."""
    notifications: Notifications | None = None
    """Webhook and Slack receivers for the rollout's transitions."""
    cost: Cost | None = None
    """The GPU price: with it, status.cost shows each version's cost per 1M requests at the QPS measured in
    Prometheus, and the monthly GPU cost."""
    deletion_policy: Literal["Orphan", "Delete"] = "Orphan"
    """On delete, all traffic goes to the stable and the route's rule is given back as it was before the rollout,
    minus its backends. Then Orphan (the default) leaves the stable Deployment and both Services serving, without
    owner. Delete removes every object the rollout made, but only once no route needs them: while the rule still
    names <name>-stable (it did before the rollout), or the route is gone or not the rollout's, they are kept,
    without owner, and a ServicesKept Event says why, so live traffic never loses its backend."""

    @model_validator(mode="after")
    def _has_a_container(self) -> ModelRolloutSpec:
        """The apiserver checks the pod template against PodTemplateSpec; this is the one part of it
        the engine relies on."""
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


class RolloutState(StrEnum):
    """Where a rollout stands: the state of the engine's state machine (`modelrollout states` prints
    every transition)."""

    NEW = "New"  # nothing deployed yet
    DEPLOYING = "Deploying"  # the first revision, until it is ready
    STABLE = "Stable"  # one revision serves all traffic
    RUNNING = "Running"  # a candidate takes its steps (warming up, waiting for GPUs, promoting)
    PAUSED = "Paused"  # by the user, by failing measurements, or while the route is taken back
    AT_PAUSE_STEP = "AtPauseStep"  # a pause step, or an inconclusive A/B test: a human goes on
    HALTED = "Halted"  # the experiment broke (a sample-ratio mismatch): a human must look
    ROLLED_BACK = "RolledBack"  # the candidate is stopped, all traffic on the stable
    WARM = "Warm"  # promoted, the old model still loaded for undo


class EventReason(StrEnum):
    """Why an Event was posted: its `reason`, one word each, as kubectl shows it."""

    ACTION_IGNORED = "ActionIgnored"
    ANALYSIS_ERROR = "AnalysisError"
    ANALYSIS_HALTED = "AnalysisHalted"
    ANALYSIS_RECOVERED = "AnalysisRecovered"
    API_ERROR = "ApiError"
    API_UNREACHABLE = "ApiUnreachable"
    CANDIDATE_READY = "CandidateReady"
    CANDIDATE_REMOVED = "CandidateRemoved"
    CANDIDATE_UNSCHEDULABLE = "CandidateUnschedulable"
    CANDIDATE_UNREACHABLE = "CandidateUnreachable"
    COMPARISON_BLOCKED = "ComparisonBlocked"
    CAPACITY_AVAILABLE = "CapacityAvailable"
    COMPARATOR_UNAVAILABLE = "ComparatorUnavailable"
    DEPLOYED = "Deployed"
    ERRORS_UNWATCHED = "ErrorsUnwatched"
    FINALIZED = "Finalized"
    HALT_RESUMED = "HaltResumed"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    INVALID_SPEC = "InvalidSpec"
    MALFORMED_STATUS = "MalformedStatus"
    NOTIFICATION_FAILED = "NotificationFailed"
    OWNERSHIP_CONFLICT = "OwnershipConflict"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    PROMOTED_FULL = "PromotedFull"
    RECONCILE_ERROR = "ReconcileError"
    RESUMED = "Resumed"
    RETRIED = "Retried"
    ROLLED_BACK = "RolledBack"
    ROLLOUT_RESTARTED = "RolloutRestarted"
    ROLLOUT_STARTED = "RolloutStarted"
    ROUTE_ERROR = "RouteError"
    ROUTE_ACCEPTED = "RouteAccepted"
    ROUTE_HANDED_BACK = "RouteHandedBack"
    ROUTE_NOT_ACCEPTED = "RouteNotAccepted"
    ROUTE_NOT_OURS = "RouteNotOurs"
    ROUTE_TAKEN_BACK = "RouteTakenBack"
    SCALED_DOWN = "ScaledDown"
    SCRAPES_SLOW = "ScrapesSlow"
    SERVICES_KEPT = "ServicesKept"
    STEP_COMPLETED = "StepCompleted"
    STEP_STARTED = "StepStarted"
    UNDONE = "Undone"
    UNKNOWN_ACTION = "UnknownAction"
    UNSCHEDULABLE = "Unschedulable"
    WARMUP_PASSED = "WarmupPassed"
    WARMUP_STARTED = "WarmupStarted"


class ConditionType(StrEnum):
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    ROLLED_BACK = "RolledBack"
    INVALID_SPEC = "InvalidSpec"
    CANDIDATE_UNSCHEDULABLE = "CandidateUnschedulable"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    ROUTE_MANAGED = "RouteManaged"
    ROUTE_ACCEPTED = "RouteAccepted"
    COMPARISON_BLOCKED = "ComparisonBlocked"
    ERRORS_UNWATCHED = "ErrorsUnwatched"
    SCRAPES_SLOW = "ScrapesSlow"


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore",
                              use_attribute_docstrings=True)


class Condition(StatusModel):
    type: ConditionType
    """Available, Progressing, Paused, Completed, RolledBack, InvalidSpec, CandidateUnschedulable,
    InsufficientCapacity, RouteManaged, RouteAccepted, ComparisonBlocked, ErrorsUnwatched or ScrapesSlow."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str
    """A CamelCase reason, e.g. AnalysisFailed."""
    message: str = ""
    """What happened, for a human."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""


class DecisionVerdict(StrEnum):
    """What a decision said: the A/B verdict, or a guardrail's breach and what it did."""

    CANDIDATE_BETTER = "CandidateBetter"
    CANDIDATE_WORSE = "CandidateWorse"
    NO_DIFFERENCE = "NoDifference"
    BREACH_ROLLBACK = "breach: rollback"
    BREACH_HOLD = "breach: hold"
    NO_WORSE = "NoWorse"  # a shadow step's comparison passed early (compare.passWhen: noWorse)


class Decision(StatusModel):
    """A verdict or a breach that moved the rollout, as the test saw it then."""

    step: int
    """The step's index (from 0)."""
    test: str
    """The test that decided: `guardrail <name>` or `anytime-valid split test` (abTest)."""
    verdict: DecisionVerdict
    """CandidateBetter, CandidateWorse, NoDifference, or `breach: rollback|hold`."""
    at: str
    """When (RFC 3339)."""
    statistic: float | None = None
    """The test's log e-value at the decision."""
    p_value: float | None = None
    """The anytime-valid p-value of that e-value: min(1, 1/e)."""
    effect: float | None = None
    """The candidate's difference: for abTest its rate over the stable's minus 1, for a guardrail its value minus the
    stable's."""
    samples: int | None = None
    """Trials in both arms."""
    detail: str = ""
    """The rates, the reason or the bounds, for a human."""


MAX_DECISIONS = 20


class GuardrailStatus(StatusModel):
    """One guardrail at the last analysis run.

    A statistical guardrail (errorRate, latencyP99, latencyP95) carries its running sequential test:
    the log likelihood ratio of each alternative of its mixture since the step began (`cumulative`)
    and its change detector (`detector`), so a restarted operator goes on with the same test.
    """

    outcome: GuardrailOutcome
    """Passed, Breached, NoData or Error."""
    reason: str = ""
    """Why, for a human."""
    value: float | None = None
    """The candidate's value over analysis.window (an error rate, a quantile in seconds, a PSI)."""
    stable: float | None = None
    """The stable's value over the same window."""
    consecutive_failures: int = 0
    """Breaches in a row (threshold guardrails)."""
    alpha: float | None = None
    """This guardrail's share of analysis.alpha."""
    evidence: float | None = None
    """The log e-value of the test since the step began; it breaches at evidenceThreshold."""
    evidence_threshold: float | None = None
    """log(1 / its share of alpha)."""
    detector: float | None = None
    """The log of the change detector (Shiryaev-Roberts); it breaches at detectorThreshold."""
    detector_threshold: float | None = None
    """The detector's threshold for the current horizon epoch."""
    cumulative: list[float] = []
    """The test's running log likelihood ratio per alternative of its mixture."""
    detector_state: list[float] = []
    """The detector's running log statistic per alternative."""
    looks: int = 0
    """Looks that counted in the test."""
    restarts: int = 0
    """Restarts of the change detector so far (one every 5 minutes of looks)."""
    slow_above: list[float] | None = None
    """Latency: a request counts as slow above these bucket bounds in seconds, [stable's, candidate's]."""
    events: list[float] = [0.0, 0.0]
    """Events counted (errors, slow requests), [stable, candidate]."""
    trials: list[float] = [0.0, 0.0]
    """Requests counted, [stable, candidate]."""


class ABTestStatus(StatusModel):
    """The abTest step's sequential test: design, evidence and progress."""

    metric: str
    """The metric judged."""
    verdict: Verdict | None = None
    """The verdict so far: Inconclusive until one is reached."""
    counted: Literal["successes", "failures"] | None = None
    """The outcome the test counts, successes or failures (the rarer one); set with the design."""
    baseline: float | None = None
    """The metric's rate in the design sample."""
    bounds: list[float] | None = None
    """The MDE as log rate ratios of the counted outcome, [lower, upper]."""
    stable_rate: float | None = None
    """The stable's rate in the test's sample."""
    candidate_rate: float | None = None
    """The candidate's rate in the test's sample."""
    effect: float | None = None
    """candidateRate / stableRate - 1."""
    successes: list[float] = [0.0, 0.0]
    """Successes in the test's sample, [stable, candidate]."""
    trials: list[float] = [0.0, 0.0]
    """Trials in the test's sample, [stable, candidate]."""
    design_looks: int = 0
    """Looks with data spent on the design sample."""
    samples: int = 0
    """Trials in the smaller arm so far."""
    samples_needed: int | None = None
    """Trials in the smaller arm by which half of the verdicts come at a true effect of the MDE: the sequential
    test's median, 50% power (an upper bound)."""
    samples_needed_p80: int | None = None
    """The same for 80% of the verdicts: 80% power, like for like with fixedHorizonSamples."""
    fixed_horizon_samples: int | None = None
    """What a fixed-horizon test would need in the smaller arm for 80% power, for comparison."""
    progress: float = 0.0
    """samples / samplesNeeded, at most 1."""
    evidence: dict[str, float] = {}
    """The highest log e-value each test has reached: worse, better, below_high, above_low."""
    tests: dict[str, list[float]] = {}
    """Each test's running log likelihood ratio per alternative of its mixture."""


class SampleRatioStatus(StatusModel):
    """The sequential sample-ratio check of an abTest step: requests per arm against the weight."""

    expected_share: float
    """The candidate's share of requests the route weight asks for."""
    requests: list[float] = [0.0, 0.0]
    """Requests counted, [stable, candidate]."""
    evidence: float | None = None
    """The log e-value of a mismatch; the step halts at threshold."""
    threshold: float | None = None
    """log(2 / 0.001)."""
    mismatch: bool = False
    """Whether the split was found broken; it stays so until a human resumes the step."""
    tests: dict[str, list[float]] = {}
    """The two one-sided tests' running log likelihood ratios."""


class ShadowStatus(StatusModel):
    """The comparison of the two models' predictions, shown even without a drift guardrail."""

    psi: float | None = None
    """Population stability index of the candidate's predictions against the stable's."""
    ks: float | None = None
    """Kolmogorov-Smirnov statistic of the same histograms."""
    jensen_shannon: float | None = None
    """Jensen-Shannon distance of the same histograms."""


class LabelsStatus(StatusModel):
    """Both models scored against the labels posted since the step began (compare.labels)."""

    labelled: float = 0.0
    """Compared requests scored against their labels."""
    stable_accuracy: float | None = None
    """The stable's share of them right."""
    stable_interval: list[float] | None = None
    """Its confidence sequence at analysis.alpha, [low, high]."""
    candidate_accuracy: float | None = None
    """The candidate's share of them right."""
    candidate_interval: list[float] | None = None
    """Its confidence sequence, [low, high]."""
    stable_only: float = 0.0
    """Requests only the stable got right: with candidateOnly, all the paired test reads (McNemar's cells)."""
    candidate_only: float = 0.0
    """Requests only the candidate got right."""
    stable_error: float | None = None
    """regression: the stable's mean absolute error (each clipped to maxError)."""
    candidate_error: float | None = None
    """regression: the candidate's mean absolute error (each clipped to maxError)."""
    error_increase_interval: list[float] | None = None
    """regression: the candidate's absolute error minus the stable's on the same request, its mean's confidence
    sequence, [low, high] (at the paired test's resolution, maxError / 20): the test breaches when its low end is
    above maxIncrease."""
    unlabelled: float = 0.0
    """Requests whose labels.window closed without a label: left out."""
    feedback: dict[str, float] = {}
    """Posted labels by what became of them (stored, unknown-key, expired, duplicate, late, wrong-type) and posts
    refused (malformed, unauthorized, limited)."""


class JudgeStatus(StatusModel):
    """A judge model's preferences between the two answers to the same prompts (compare.judge)."""

    judged: float = 0.0
    """Pairs the judge gave a verdict on (its first ask, in a random order)."""
    preferred: dict[str, float] = {}
    """Of them, by the model it preferred: candidate, stable, tie."""
    stable_wins: float | None = None
    """The stable's share of the decided pairs (ties excluded): the sign test breaches above 1/2 + margin."""
    stable_wins_interval: list[float] | None = None
    """Its confidence sequence at analysis.alpha, [low, high]."""
    position_bias: float | None = None
    """The share of every verdict's decided asks that chose the answer shown first, minus 1/2 (the order is
    random, so a bias adds noise, never a lean)."""
    swapped: dict[str, float] = {}
    """Pairs asked again in the other order: consistent (the same model preferred) or inconsistent."""
    failures: dict[str, float] = {}
    """Judge calls without a verdict, by reason (timeout, unreachable, status, no-verdict)."""
    skipped: dict[str, float] = {}
    """Compared pairs not judged, by reason (rate-limited, budget, overloaded, no-question)."""
    calibration_pairs: float | None = None
    """With judge.calibration: judged pairs a human preference was posted for."""
    agreement: float | None = None
    """Of them, the share where the human preferred what the judge did."""
    raw_interval: list[float] | None = None
    """The stable's share of the judge's verdicts (a tie half): its confidence sequence, [low, high]."""
    corrected_interval: list[float] | None = None
    """The same share of human preferences, the judge corrected by the human-judged pairs
    (prediction-powered inference, Angelopoulos et al., Science 2023): with calibration, the judge test
    breaches when its low end is above 1/2 + margin, and passes when its high end is below."""


class ComparisonStatus(StatusModel):
    """The shadow step's comparison of the two models' answers (compare), since the step began."""

    step: int | None = None
    """The shadow step it is of (from 0): in a later step, an earlier step's comparison, carried on for the
    labels and human preferences that arrive after it ended."""
    pairs: float = 0.0
    """Requests both models answered and the comparator compared."""
    twice: float = 0.0
    """Of them, those the stable answered a second time (its own nondeterminism)."""
    candidate_rate: float | None = None
    """How often the candidate's answer differed from the stable's."""
    candidate_interval: list[float] | None = None
    """Its confidence sequence at analysis.alpha, [low, high]: valid at every look."""
    stable_rate: float | None = None
    """How often the stable's second answer differed from its first."""
    stable_interval: list[float] | None = None
    """Its confidence sequence, [low, high]."""
    evidence: dict[str, float] = {}
    """Each test's log e-value: disagreement, noWorse, pairedLatency, outputDelta, labels, labelsNoWorse, judge,
    judgeNoWorse."""
    threshold: dict[str, float] = {}
    """Each test's log(1 / its alpha): it decides there."""
    breached: list[str] = []
    """The tests that breached in this step attempt; a breach stands until a human acts."""
    no_worse: list[str] = []
    """The early passes that decided in this step attempt: noWorse (disagreement), labelsNoWorse, judgeNoWorse."""
    passed: bool = False
    """passWhen noWorse, and every configured early pass decided (the disagreement, the labels', the judge's) with
    no breach: the step ends."""
    differs_most: dict[str, float] = {}
    """The fields (json, v2) or parts (text, finish_reason, status) that differed most, with their counts."""
    failures: dict[str, float] = {}
    """Answers not compared, by side/reason (candidate/timeout, stable/format, ...)."""
    skipped: dict[str, float] = {}
    """Mirrored requests not compared, by reason (rate-limited, overloaded, side-effects, too-large)."""
    counts: dict[str, float] = {}
    """The comparator's cell counts since the step began, which every test above is a function of."""
    blocked: str | None = None
    """Why nothing could be compared (a compare path no answer has, a candidate that never answers):
    the step holds, and condition ComparisonBlocked says so."""
    labels: LabelsStatus | None = None
    """With compare.labels: both models' accuracy on the same labelled requests."""
    judge: JudgeStatus | None = None
    """With compare.judge: the judge's preferences, its position bias and, calibrated, its correction."""


class AnalysisStatus(StatusModel):
    """The last analysis run of the current step attempt. The analysis alone writes it."""

    step: int
    """The step's index (from 0)."""
    step_started_at: str
    """The step attempt this analysis belongs to (RFC 3339)."""
    last_run: str
    """When the analysis last looked (RFC 3339)."""
    looks: int = 0
    """Looks in this step attempt."""
    verdict: AnalysisVerdict
    """What the last look told the rollout: Pass, Fail, Hold, Error or Halt."""
    reason: str = ""
    """Why, for a human."""
    decided_by: str | None = None
    """The guardrail, `abTest` or `sampleRatio` whose result decided the verdict."""
    consecutive_errors: int = 0
    """Looks in a row without data; onError acts at errorLimit."""
    duration_ms: float | None = None
    """How long the last look's queries and tests took, in milliseconds."""
    counters: dict[str, float] = {}
    """Counter totals at the last look; the next look counts from them."""
    guardrails: dict[str, GuardrailStatus] = {}
    """Each guardrail at the last look, by name."""
    ab_test: ABTestStatus | None = None
    """The abTest step's test."""
    sample_ratio: SampleRatioStatus | None = None
    """The abTest step's sample-ratio check."""
    shadow: ShadowStatus | None = None
    """The comparison of the two models' predictions in a shadow step."""
    comparison: ComparisonStatus | None = None
    """The comparison of the two models' answers to the same requests (a shadow step with compare)."""
    oldest_scrape_seconds: float | None = None
    """The oldest the request counts have been at a look of this step: seconds from the look back to the mean
    time of an arm's last scrapes, the older arm. Far past analysis.interval, Prometheus scrapes less often than
    the analysis looks, and most looks count nothing new (condition ScrapesSlow)."""


class VersionCost(StatusModel):
    """One version's cost: the seeds' calculator on its GPUs and measured requests per second."""

    revision: str
    """The template revision."""
    gpus: int
    """GPUs serving it: its Deployment's replicas times the nvidia.com/gpu of its pod template."""
    requests: float | None = None
    """Its requests so far (inference_request_total summed over its pods) at measuredAt."""
    requests_per_second: float | None = None
    """Requests per second between the previous reading and this one; absent on its first reading."""
    per_million: float | None = None
    """Dollars per 1M requests at that rate; absent while it serves nothing."""
    effective_per_million: float | None = None
    """The same at spec.cost.utilization (per million / utilization)."""
    monthly: float
    """Dollars of GPU time in a 730-hour month."""


class WarmupStatus(StatusModel):
    """The candidate's warm-up: mirrored requests until its latency is under strategy.warmup.maxLatency."""

    started_at: str
    """When the Ready candidate began to get warm-up requests (RFC 3339)."""
    passed_at: str | None = None
    """When its latency was under maxLatency (RFC 3339); live traffic only after that."""
    requests: float | None = None
    """Warm-up requests in the last reading's window."""
    latency_p95: float | None = None
    """Their p95 latency, seconds."""
    message: str = ""
    """The last reading, or why there was none."""


class CostStatus(StatusModel):
    """Cost per request of the stable and the candidate, read once a minute."""

    measured_at: str
    """When the request counters were read (RFC 3339)."""
    stable: VersionCost | None = None
    """The stable's cost."""
    candidate: VersionCost | None = None
    """The candidate's cost, during a rollout."""
    reason: str = ""
    """Why the counters could not be read, if they could not (the last figures stay)."""


class ComparisonRecord(StatusModel):
    """The last look at a compared step that takes feedback (labels, or a calibrated judge's preferences):
    the later steps of the same rollout go on from it, so labels that arrive after the step ended still
    count toward its tests."""

    comparison: ComparisonStatus
    """The comparison as its last look left it."""
    counters: dict[str, float] = {}
    """The comparator's totals that look read, by process: what the next look counts from."""


class ModelRolloutStatus(StatusModel):
    phase: Phase = Phase.PENDING
    """Pending, Progressing, Paused, Completed or RolledBack."""
    state: RolloutState = RolloutState.NEW
    """The state machine's state: New, Deploying, Stable, Running, Paused, AtPauseStep, Halted,
    RolledBack or Warm."""
    observed_generation: int = 0
    """The spec generation this status describes."""
    message: str = ""
    """One line on what is happening."""
    stable_revision: str | None = None
    """The template revision (a hash) serving as the stable."""
    candidate_revision: str | None = None
    """The revision being rolled out, if any."""
    previous_stable_revision: str | None = None
    """The stable before the last promotion, kept warm for undo."""
    current_step: int = 0
    """The step's index (from 0)."""
    step_label: str = ""
    """The step as "3/5", for kubectl get."""
    step_started_at: str | None = None
    """When the current step attempt started (RFC 3339)."""
    step_ends_at: str | None = None
    """When its duration (an abTest's maxDuration) runs out (RFC 3339)."""
    canary_weight: int = 0
    """Percent of live traffic the candidate serves."""
    mirror_percent: int = 0
    """Percent of live traffic mirrored to the candidate."""
    verdict: Verdict | None = None
    """The A/B verdict of the rollout: CandidateBetter, CandidateWorse, NoDifference or Inconclusive."""
    pending_action: Action | None = None
    """A manual action taken from the annotation, applied by the next reconcile."""
    last_action: Action | None = None
    """The last manual action applied."""
    pause_reason: PauseReason | None = None
    """Why the rollout is paused: user, step, analysis, halted, route or gateway."""
    candidate_ready: bool = False
    """Whether every candidate replica is Ready."""
    scale_down_at: str | None = None
    """When the previous stable is scaled down (RFC 3339)."""
    capacity_wait_since: str | None = None
    """Since when the candidate has waited for capacity (RFC 3339)."""
    conditions: list[Condition] = []
    """Available, Progressing, Paused, Completed, RolledBack, InvalidSpec, CandidateUnschedulable,
    InsufficientCapacity, RouteManaged, ErrorsUnwatched, ScrapesSlow."""
    analysis: AnalysisStatus | None = None
    """The last analysis look of the current step attempt."""

    @field_validator("analysis", mode="wrap")
    @classmethod
    def _fresh_analysis_if_unreadable(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # A status from an older operator (an untyped blob) starts its step's analysis afresh.
        try:
            return handler(value)
        except ValidationError:
            return None
    comparison_record: ComparisonRecord | None = None
    """The comparison of this rollout's last compared step that takes feedback, carried into its later steps."""
    decisions: Annotated[list[Decision], Field(max_length=MAX_DECISIONS)] = []
    """The last 20 verdicts and breaches."""
    cost: CostStatus | None = None
    """Cost per 1M requests and per month of each version, with spec.cost."""
    warmup: WarmupStatus | None = None
    """The candidate's warm-up, with strategy.warmup."""
