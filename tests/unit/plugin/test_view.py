"""The plugin's views, drawn from plain dicts: no cluster."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console

from controller.plugin.view import diff_view, judged_view, list_view, rollout_view

ROLLOUT: dict[str, Any] = {
    "metadata": {"name": "scorer", "namespace": "ml"},
    "spec": {"strategy": {"steps": [{"shadow": {"percent": 20, "duration": "5m"}},
                                    {"canary": {"weight": 40, "duration": "10m"}},
                                    {"abTest": {"weight": 50, "metric": "conversion"}}, {"pause": {}}]}},
    "status": {
        "phase": "Progressing", "currentStep": 2, "stepLabel": "3/4", "canaryWeight": 50, "mirrorPercent": 0,
        "stableRevision": "aaa", "candidateRevision": "bbb", "message": "abTest running",
        "analysis": {
            "verdict": "Pass", "guardrails": {
                "errors": {"outcome": "Passed", "value": 0.011, "stable": 0.01, "evidence": 1.5,
                           "evidenceThreshold": 3.7}},
            "abTest": {"metric": "conversion", "samples": 400, "samplesNeeded": 1000, "stableRate": 0.1,
                       "candidateRate": 0.11, "effect": 0.1, "evidence": {"better": 2.0}, "bounds": [-0.1, 0.1]},
        },
        "decisions": [{"step": 1, "test": "guardrail errors", "verdict": "breach: hold", "at": "2026-11-24T02:00:00Z",
                       "pValue": 0.2, "effect": 0.001}],
    },
}
DEPLOYMENTS = [{"metadata": {"labels": {"rollouts.mlops.dev/revision": revision}},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [
                    {"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
                "status": {"readyReplicas": ready}} for revision, ready in (("aaa", 2), ("bbb", 1))]
PODS = [{"metadata": {"labels": {"rollouts.mlops.dev/revision": "bbb"}}, "status": {"phase": phase}}
        for phase in ("Running", "Pending")]


def _text(renderable: object) -> str:
    console = Console(record=True, width=140, color_system=None)
    console.print(renderable)
    return "\n".join(" ".join(line.split()) for line in console.export_text().splitlines())


def test_get_shows_steps_traffic_revisions_analysis_and_decisions() -> None:
    text = _text(rollout_view(ROLLOUT, DEPLOYMENTS, PODS))
    assert "ml/scorer" in text and "Progressing" in text and "3/4" in text
    assert "✔ 1. shadow 20% for 5m" in text and "✔ 2. canary 40% for 10m" in text
    assert "▶ 3. abTest 50% on conversion" in text and "· 4. pause until resumed" in text
    assert " 50%" in text  # the weight bar's figure
    stable = next(line for line in text.splitlines() if "stable" in line and "aaa" in line)
    assert "2/2" in stable
    candidate = next(line for line in text.splitlines() if "candidate" in line and "bbb" in line)
    assert "1/2" in candidate and "Pending, Running" in candidate and candidate.rstrip(" │").endswith("1")
    guardrail = next(line for line in text.splitlines() if "errors" in line and "Passed" in line)
    assert "0.011" in guardrail and "1.50 / 3.70" in guardrail
    assert "400 / 1,000" in text
    assert f"{math.exp(-2.0):.4f}" in text and "+10.00%" in text
    assert "breach: hold" in text


def test_list_shows_one_row_a_rollout() -> None:
    other = {"metadata": {"name": "ranker", "namespace": "ml"}, "status": {"phase": "Completed"}}
    text = _text(list_view([ROLLOUT, other]))
    assert [line.split("│")[2].strip() for line in text.splitlines() if "│ ml" in line] == ["scorer", "ranker"]


def test_get_shows_each_versions_cost() -> None:
    cost = {"measuredAt": "2026-11-24T02:00:00Z",
            "stable": {"revision": "aaa", "gpus": 2, "requestsPerSecond": 500.0, "perMillion": 1.12,
                       "effectivePerMillion": 1.6, "monthly": 1474.6},
            "candidate": {"revision": "bbb", "gpus": 2, "monthly": 1474.6}}
    text = _text(rollout_view({**ROLLOUT, "status": {**ROLLOUT["status"], "cost": cost}}, DEPLOYMENTS, PODS))
    stable = next(line for line in text.splitlines() if "stable aaa" in line)
    assert "500.00" in stable and "$1.12" in stable and "$1,474.60" in stable
    candidate = next(line for line in text.splitlines() if "candidate bbb" in line)
    assert candidate.count("-") >= 2, "no rate yet: no per-request figures"


def test_get_shows_the_warm_up_before_the_steps() -> None:
    spec = {"strategy": {**ROLLOUT["spec"]["strategy"],
                         "warmup": {"maxLatency": "500ms", "mirrorPercent": 10}}}
    warming = {**ROLLOUT["status"], "currentStep": 0, "canaryWeight": 0, "mirrorPercent": 10,
               "warmup": {"startedAt": "2026-11-24T02:00:00Z", "message": "p95 1800ms over 40 requests"}}
    text = _text(rollout_view({**ROLLOUT, "spec": spec, "status": warming}, DEPLOYMENTS, PODS))
    assert "▶ 0. warm-up: mirror 10% until p95 < 500ms (p95 1800ms over 40 requests)" in text
    assert "· 1. shadow 20% for 5m" in text
    text = _text(rollout_view({**ROLLOUT, "spec": spec}, DEPLOYMENTS, PODS))
    assert "✔ 0. warm-up: mirror 10% until p95 < 500ms" in text


def test_get_says_when_failures_go_unwatched_or_the_route_is_not_ours_or_not_served() -> None:
    status = {**ROLLOUT["status"], "conditions": [
        {"type": "RouteAccepted", "status": "False", "reason": "RouteNotAccepted", "lastTransitionTime": "t",
         "message": "Gateway apps/gateway (nope) does not accept the route: NoMatchingParent"},
        {"type": "ErrorsUnwatched", "status": "True", "reason": "ErrorsUnwatched", "lastTransitionTime": "t",
         "message": "analysis.profile kserve counts no failed requests"},
        {"type": "RouteManaged", "status": "False", "reason": "RouteTakenBack", "lastTransitionTime": "t",
         "message": "HTTPRoute scorer any rule no longer sends traffic to Service scorer-stable"}]}
    text = _text(rollout_view({**ROLLOUT, "status": status}))
    assert "! ErrorsUnwatched: analysis.profile kserve counts no failed requests" in text
    assert "! RouteManaged: HTTPRoute scorer" in text
    assert "! RouteAccepted: Gateway apps/gateway (nope) does not accept the route" in text
    assert "! " not in _text(rollout_view(ROLLOUT)), "nothing when all is watched"


def test_get_shows_a_comparison_and_diff_shows_the_disagreements_side_by_side() -> None:
    comparison = {"pairs": 1200, "twice": 240, "candidateRate": 0.061, "candidateInterval": [0.045, 0.08],
                  "stableRate": 0.0, "stableInterval": [0.0, 0.012], "evidence": {"disagreement": 4.2, "noWorse": -3},
                  "threshold": {"disagreement": 3.0, "noWorse": 3.0}, "breached": ["disagreement"],
                  "differsMost": {"predict": 73}, "failures": {"candidate/timeout": 2}}
    status = {**ROLLOUT["status"], "analysis": {"verdict": "Hold", "guardrails": {}, "comparison": comparison}}
    text = _text(rollout_view({**ROLLOUT, "status": status}))
    assert "Comparison of answers: breached: disagreement" in text
    assert "6.1% [4.5%, 8.0%]" in text and "predict (73)" in text and "candidate/timeout 2" in text
    labels = {"labelled": 900, "stableAccuracy": 0.91, "stableInterval": [0.88, 0.93], "candidateAccuracy": 0.86,
              "candidateInterval": [0.83, 0.89], "stableOnly": 54, "candidateOnly": 9, "unlabelled": 3,
              "feedback": {"stored": 903, "unknown-key": 4}}
    labelled = _text(rollout_view({**ROLLOUT, "status": {**status, "analysis": {
        **status["analysis"], "comparison": {**comparison, "labels": labels}}}}))
    assert "candidate accuracy 86.0% [83.0%, 89.0%]" in " ".join(labelled.split()), labelled
    assert "only the stable right 54, only the candidate 9" in " ".join(labelled.split())
    assert "unknown-key 4" in labelled
    regression = _text(rollout_view({**ROLLOUT, "status": {**status, "analysis": {
        **status["analysis"], "comparison": {**comparison, "labels": {
            **labels, "stableError": 0.3, "candidateError": 0.42, "errorIncreaseInterval": [0.08, 0.16]}}}}}))
    assert "stable 0.3, candidate 0.42 (the candidate's larger by [0.08, 0.16])" in " ".join(regression.split())
    shown = _text(diff_view([{"method": "POST", "path": "/v2/models/scorer/infer", "differsAt": ["predict"],
                              "stable": '{"outputs": [0]}', "candidate": '{"outputs": [1]}',
                              "status": {"stable": 200, "candidate": 200}}]))
    assert "differs at predict" in shown and "stable (200)" in shown and "candidate (200)" in shown
    assert '{"outputs": [1]}' in shown
    assert "no disagreement kept" in _text(diff_view([]))


def test_get_shows_the_judges_verdicts_and_diff_judged_the_surest_pairs_each_way() -> None:
    judge = {"judged": 400, "preferred": {"stable": 240, "candidate": 150, "tie": 10}, "stableWins": 0.615,
             "stableWinsInterval": [0.55, 0.68], "positionBias": 0.072, "swapped": {"consistent": 30,
                                                                                   "inconsistent": 10},
             "failures": {"timeout": 3}, "skipped": {"rate-limited": 90}, "calibrationPairs": 30,
             "agreement": 0.8, "rawInterval": [0.55, 0.67], "correctedInterval": [0.41, 0.7]}
    status = {**ROLLOUT["status"], "analysis": {"verdict": "Hold", "guardrails": {}, "comparison": {
        "pairs": 400, "breached": [], "judge": judge}}}
    text = " ".join(_text(rollout_view({**ROLLOUT, "status": status})).split())
    assert "the stable preferred on 240, the candidate on 150, 10 ties" in text
    assert "stable wins 61.5% [55.0%, 68.0%]" in text
    assert "+7.2 points toward the first answer; the same verdict both ways on 30 of 40" in text
    assert "stable share, corrected [41.0%, 70.0%] by 30 human preferences (the judge agreed on 80%)" in text
    assert "timeout 3" in text and "rate-limited 90" in text
    pair = {"key": "r-7", "question": "user: Why is the sky blue?", "stable": "Rayleigh scattering.",
            "candidate": "wrong: it reflects the sea", "preferred": "stable", "consistent": True}
    shown = " ".join(_text(judged_view({"kept": 3, "calls": 120, "budget": 5000, "stable": [pair],
                                        "candidate": []})).split())
    assert "judge calls 120 of a budget of 5,000" in shown
    assert "the judge preferred the stable: 1 kept" in shown and "the judge preferred the candidate: 0 kept" in shown
    assert "r-7 (the same both ways): user: Why is the sky blue?" in shown and "stable (preferred)" in shown
    assert "no judged pair kept" in _text(judged_view({"kept": 0, "calls": 0, "budget": 10}))
