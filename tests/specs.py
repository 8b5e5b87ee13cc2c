"""One table of ModelRollout specs: a valid one, and bad ones with the field and reason admission must name."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The README's example, applied verbatim: one complete spec, kept in one file.
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fraud-scorer.yaml"
VALID_SPEC: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())["spec"]


@dataclass(frozen=True)
class BadSpec:
    id: str
    path: tuple[Any, ...]
    value: Any
    field: str
    reason: str
    # Further (path, value) edits, for rules that only a combination breaks.
    also: tuple[tuple[tuple[Any, ...], Any], ...] = ()
    # How the pydantic twin words the same reason, where its words differ from the apiserver's;
    # None: the pod template is checked by the apiserver's own PodTemplateSpec schema only.
    twin_reason: str | None = ""

    def spec(self) -> dict[str, Any]:
        spec = copy.deepcopy(VALID_SPEC)
        for path, value in ((self.path, self.value), *self.also):
            target: Any = spec
            for key in path[:-1]:
                target = target[key]
            if value is DELETE:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        return spec


DELETE = object()

BAD_SPECS = [
    BadSpec("no-steps", ("strategy", "steps"), [], "spec.strategy.steps", "at least 1 items",
            twin_reason="at least 1 item"),
    BadSpec("steps-missing", ("strategy", "steps"), DELETE, "spec.strategy.steps", "Required value"),
    BadSpec("weight-over-100", ("strategy", "steps", 1, "canary", "weight"), 150,
            "spec.strategy.steps[1].canary.weight", "less than or equal to 100"),
    BadSpec("weight-negative", ("strategy", "steps", 1, "canary", "weight"), -1,
            "spec.strategy.steps[1].canary.weight", "greater than or equal to 0"),
    BadSpec("weights-decrease", ("strategy", "steps", 2, "canary", "weight"), 3,
            "spec.strategy.steps", "weights must not decrease"),
    BadSpec("ab-weight-below-canary", ("strategy", "steps", 3, "abTest", "weight"), 10,
            "spec.strategy.steps", "weights must not decrease"),
    BadSpec("shadow-under-replicas", ("trafficRouting",), {"replicas": {}},
            "spec.strategy.steps", "replicas cannot do"),
    BadSpec("header-route-under-replicas", ("trafficRouting",), {"replicas": {}},
            "spec.strategy.steps", "headerRoute routes by header",
            also=((("strategy", "steps", 0), {"canary": {"weight": 1, "duration": "1m"}}),)),
    BadSpec("two-routing-modes", ("trafficRouting",),
            {"gatewayAPI": {"httpRoute": "r"}, "istio": {"virtualService": "v"}},
            "spec.trafficRouting", "exactly one routing mode"),
    BadSpec("no-routing-mode", ("trafficRouting",), {}, "spec.trafficRouting", "exactly one routing mode"),
    BadSpec("negative-duration", ("strategy", "steps", 1, "canary", "duration"), "-5m",
            "spec.strategy.steps[1].canary.duration", "should match"),
    BadSpec("duration-in-words", ("strategy", "steps", 0, "shadow", "duration"), "ten minutes",
            "spec.strategy.steps[0].shadow.duration", "should match"),
    BadSpec("unknown-field", ("colour",), "blue", "spec.colour", "unknown field"),
    BadSpec("unknown-step-field", ("strategy", "steps", 1, "canary", "wieght"), 5,
            "spec.strategy.steps[1].canary.wieght", "unknown field"),
    BadSpec("two-kinds-in-one-step", ("strategy", "steps", 1, "pause"), {},
            "spec.strategy.steps[1]", "exactly one of shadow, canary, abTest or pause"),
    BadSpec("empty-step", ("strategy", "steps", 4), {}, "spec.strategy.steps[4]",
            "exactly one of shadow, canary, abTest or pause"),
    BadSpec("mirror-over-100", ("strategy", "steps", 0, "shadow", "percent"), 101,
            "spec.strategy.steps[0].shadow.percent", "less than or equal to 100"),
    BadSpec("compare-without-format", ("strategy", "steps", 0, "shadow", "compare"), {"noisePercent": 20},
            "spec.strategy.steps[0].shadow.compare.format", "Required value", twin_reason="Field required"),
    BadSpec("compare-path-not-jsonpath", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "json", "paths": ["label"]}, "spec.strategy.steps[0].shadow.compare.paths[0]",
            "should match"),
    BadSpec("compare-paths-on-v2", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "paths": ["$.label"]}, "spec.strategy.steps[0].shadow.compare.paths",
            "only with format json"),
    BadSpec("compare-output-delta-on-text", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "openai", "outputDelta": {"max": 0.1}}, "spec.strategy.steps[0].shadow.compare.outputDelta",
            "only with format json or v2"),
    BadSpec("labels-without-a-key", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "feedback": {"tokenSecretRef": {"name": "feedback"}}, "labels": {}},
            "spec.strategy.steps[0].shadow.compare.labels", "set requestKey (or requestKeyPath) and feedback"),
    BadSpec("labels-without-feedback", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "requestKey": "x-request-id", "labels": {}},
            "spec.strategy.steps[0].shadow.compare.labels", "set requestKey (or requestKeyPath) and feedback"),
    BadSpec("two-request-keys", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "requestKey": "x-request-id", "requestKeyPath": "$.id"},
            "spec.strategy.steps[0].shadow.compare.requestKey", "not both"),
    BadSpec("labels-on-text", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "openai", "requestKey": "x-request-id", "feedback": {"tokenSecretRef": {"name": "feedback"}},
             "labels": {}},
            "spec.strategy.steps[0].shadow.compare.labels", "only with format json or v2"),
    BadSpec("labels-json-without-prediction", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "json", "requestKey": "x-request-id", "feedback": {"tokenSecretRef": {"name": "feedback"}},
             "labels": {}},
            "spec.strategy.steps[0].shadow.compare.labels", "labels.prediction must say where"),
    BadSpec("labels-k-without-ranking", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "requestKey": "x-request-id", "feedback": {"tokenSecretRef": {"name": "feedback"}},
             "labels": {"k": 5}},
            "spec.strategy.steps[0].shadow.compare.labels.k", "only with task ranking"),
    BadSpec("regression-without-max-error", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "requestKey": "x-request-id", "feedback": {"tokenSecretRef": {"name": "feedback"}},
             "labels": {"task": "regression"}},
            "spec.strategy.steps[0].shadow.compare.labels.maxError", "set maxError"),
    BadSpec("max-error-on-classification", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "requestKey": "x-request-id", "feedback": {"tokenSecretRef": {"name": "feedback"}},
             "labels": {"maxError": 1.0}},
            "spec.strategy.steps[0].shadow.compare.labels.maxError", "only with task regression"),
    BadSpec("feedback-without-a-token", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "requestKey": "x-request-id", "feedback": {}},
            "spec.strategy.steps[0].shadow.compare.feedback.tokenSecretRef", "Required value",
            twin_reason="Field required"),
    BadSpec("judge-on-numbers", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "v2", "judge": {"url": "http://judge:8000", "model": "judge-7b"}},
            "spec.strategy.steps[0].shadow.compare.judge", "only with format openai"),
    BadSpec("judge-calibration-without-feedback", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "openai", "judge": {"url": "http://judge:8000", "model": "judge-7b", "calibration": True}},
            "spec.strategy.steps[0].shadow.compare.judge.calibration", "set requestKey (or requestKeyPath)"),
    BadSpec("judge-prompt-without-answers", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "openai", "judge": {"url": "http://judge:8000", "model": "judge-7b",
                                           "prompt": "Which is better? {question}"}},
            "spec.strategy.steps[0].shadow.compare.judge.prompt", "{answer_a}"),
    BadSpec("judge-is-the-model", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "openai", "judge": {"url": "http://judge:8000", "model": VALID_SPEC["model"]}},
            "spec.strategy.steps", "cannot judge its own answers"),
    BadSpec("compare-noise-zero", ("strategy", "steps", 0, "shadow", "compare"),
            {"format": "bytes", "noisePercent": 0}, "spec.strategy.steps[0].shadow.compare.noisePercent",
            "greater than or equal to 1"),
    BadSpec("compare-without-analysis", ("analysis",), DELETE, "spec.strategy.steps",
            "judged from the comparator's counts", also=((("strategy", "steps", 0, "shadow", "compare"),
                                                         {"format": "bytes"}),)),
    BadSpec("compare-under-replicas", ("trafficRouting",), {"replicas": {}},
            "spec.strategy.steps", "(and its compare) mirrors traffic",
            also=((("strategy", "steps", 0, "shadow", "compare"), {"format": "bytes"}),)),
    BadSpec("zero-replicas", ("replicas",), 0, "spec.replicas", "greater than or equal to 1"),
    BadSpec("no-containers", ("template", "spec", "containers"), [], "spec.template.spec.containers",
            "at least 1 items", twin_reason="at least one container"),
    BadSpec("model-missing", ("model",), DELETE, "spec.model", "Required value"),
    BadSpec("guardrail-without-source", ("analysis", "guardrails", 1, "template"), DELETE,
            "spec.analysis.guardrails[1]", "exactly one of template or query"),
    BadSpec("guardrail-without-bound", ("analysis", "guardrails", 1), {"name": "error-rate", "template": "errorRate"},
            "spec.analysis.guardrails[1]", "needs a bound"),
    BadSpec("alpha-too-large", ("strategy", "steps", 3, "abTest", "alpha"), 0.7,
            "spec.strategy.steps[3].abTest.alpha", "less than 0.5"),
    BadSpec("ab-metric-typo", ("strategy", "steps", 3, "abTest", "metric"), "converison",
            "spec.strategy.steps", "abTest.metric must be conversion, success, or the name of one of"),
    BadSpec("profile-lacks-template", ("analysis", "profile"), "vllm", "spec.analysis.guardrails",
            "analysis.profile vllm exports nothing for guardrail templates"),
    BadSpec("conversion-needs-seeds", ("analysis", "profile"), "vllm", "spec.strategy.steps",
            "the conversion template counts model_conversions_total, which only the seeds profile exports",
            also=((("analysis", "guardrails"), VALID_SPEC["analysis"]["guardrails"][:2]),)),
    BadSpec("success-needs-counters", ("strategy", "steps", 3, "abTest", "metric"), "success",
            "spec.strategy.steps", "the success template counts failed requests, which analysis.profile's server",
            also=((("analysis", "profile"), "kserve"), (("analysis", "guardrails"), VALID_SPEC["analysis"][
                "guardrails"][:1]))),
    BadSpec("success-metric-needs-counters", ("analysis", "metrics"), [{"name": "ok", "template": "success"}],
            "spec.analysis.metrics", "the success template counts failed requests, which analysis.profile's server",
            also=((("analysis", "profile"), "kserve"), (("analysis", "guardrails"), VALID_SPEC["analysis"][
                "guardrails"][:1]), (("strategy", "steps", 3, "abTest", "metric"), "ok"))),
    BadSpec("counts-errors-on-a-template", ("analysis", "guardrails", 1, "countsErrors"), True,
            "spec.analysis.guardrails[1].countsErrors", "countsErrors describes a query"),
    BadSpec("model-rewrites-promql", ("model",), 'x"} or vector(1) or {a="', "spec.model", "should match"),
    BadSpec("interval-under-a-second", ("analysis", "interval"), "0.001ms", "spec.analysis.interval",
            "must be at least 1s"),
    BadSpec("secret-name-is-a-path", ("analysis", "prometheus", "secretRef"),
            {"name": "../../kube-system/secrets/x"}, "spec.analysis.prometheus.secretRef.name", "should match"),
    BadSpec("ignore-below-on-a-threshold", ("analysis", "guardrails", 2, "ignoreBelow"), 0.1,
            "spec.analysis.guardrails[2].ignoreBelow", "ignoreBelow is the floor of a test template"),
    BadSpec("swap-under-replicas", ("strategy", "capacity"), {"policy": "swap"},
            "spec.strategy.capacity.policy", "capacity.policy swap needs gatewayAPI or istio",
            also=((("trafficRouting",), {"replicas": {}}),
                  (("strategy", "steps"), [{"canary": {"weight": 25, "duration": "10m"}}]))),
    BadSpec("swap-leaves-too-few", ("strategy", "capacity"), {"policy": "swap", "minAvailable": 2},
            "spec.strategy.capacity.minAvailable", "every step must leave the stable at least minAvailable"),
    BadSpec("warmup-under-replicas", ("strategy", "warmup"), {"maxLatency": "500ms"},
            "spec.strategy.warmup", "strategy.warmup mirrors requests to the candidate",
            also=((("trafficRouting",), {"replicas": {}}),
                  (("strategy", "steps"), [{"canary": {"weight": 25, "duration": "10m"}}]))),
    BadSpec("warmup-without-latency", ("strategy", "warmup"), {"maxLatency": "500ms"},
            "spec.strategy.warmup", "strategy.warmup reads a request latency histogram",
            also=((("analysis", "profile"), "triton"), (("analysis", "guardrails"), []),
                  (("strategy", "steps"), [{"canary": {"weight": 25, "duration": "10m"}}]))),
    BadSpec("ab-effect-unknown", ("strategy", "steps", 3, "abTest", "effect"), "percent",
            "spec.strategy.steps[3].abTest.effect", "Unsupported value", twin_reason="Input should be"),
    BadSpec("analysis-alpha-zero", ("analysis", "alpha"), 0, "spec.analysis.alpha", "greater than 0"),
    BadSpec("negative-scale-down-delay", ("strategy", "scaleDownDelaySeconds"), -1,
            "spec.strategy.scaleDownDelaySeconds", "greater than or equal to 0"),
    BadSpec("prometheus-not-http", ("analysis", "prometheus", "address"), "ftp://prom:9090",
            "spec.analysis.prometheus.address", "should match"),
    BadSpec("unknown-guardrail-template", ("analysis", "guardrails", 0, "template"), "p42",
            "spec.analysis.guardrails[0].template", "Unsupported value", twin_reason="Input should be"),
    BadSpec("zero-interval", ("analysis", "interval"), "0s", "spec.analysis.interval", "must be at least 1s"),
    BadSpec("zero-window", ("analysis", "window"), "0s", "spec.analysis.window", "must be longer than 0s"),
    BadSpec("zero-step-duration", ("strategy", "steps", 1, "canary", "duration"), "0m",
            "spec.strategy.steps[1].canary.duration", "must be longer than 0s"),
    BadSpec("prometheus-broken-url", ("analysis", "prometheus", "address"), "http://[::1",
            "spec.analysis.prometheus.address", "must be a valid http(s) URL"),
    BadSpec("container-empty", ("template", "spec", "containers"), [{}],
            "spec.template.spec.containers[0].name", "Required value", twin_reason=None),
    BadSpec("container-without-name", ("template", "spec", "containers"), [{"image": "scorer:v2"}],
            "spec.template.spec.containers[0].name", "Required value", twin_reason=None),
    BadSpec("pod-field-typo", ("template", "spec", "nodeSelecter"), {"gpu": "a10"},
            "spec.template.spec.nodeSelecter", "unknown field", twin_reason=None),
    BadSpec("container-field-typo", ("template", "spec", "containers", 0, "imagePullPolicyy"), "Always",
            "spec.template.spec.containers[0].imagePullPolicyy", "unknown field", twin_reason=None),
    BadSpec("resource-not-a-quantity", ("template", "spec", "containers", 0, "resources", "limits", "memory"),
            ["8Gi"], "spec.template.spec.containers[0].resources.limits.memory", "must be of type",
            twin_reason=None),
]
