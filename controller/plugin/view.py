"""What `kubectl modelrollout get` draws: pure, from the rollout and its Deployments and Pods as dicts.

rich does the drawing; nothing here reads the cluster, so the view is unit-tested on plain dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from controller.capacity import pod_gpus
from controller.kube.cache import REVISION_LABEL

PHASE_STYLE = {"Completed": "green", "RolledBack": "red",
               "Paused": "yellow", "Progressing": "cyan", "Pending": "dim"}
OUTCOME_STYLE = {"Passed": "green", "Breached": "red", "NoData": "yellow", "Error": "red"}


def _step_name(step: dict[str, Any]) -> str:
    kind, settings = next(iter(step.items()))
    if kind == "shadow":
        return f"shadow {settings.get('percent', 100)}% for {settings.get('duration', '?')}"
    if kind == "canary":
        return f"canary {settings.get('weight')}% for {settings.get('duration', '?')}"
    if kind == "abTest":
        return f"abTest {settings.get('weight', 50)}% on {settings.get('metric', 'conversion')}"
    return f"pause {settings.get('duration', 'until resumed')}" if settings else "pause until resumed"


def steps_view(spec: dict[str, Any], status: dict[str, Any]) -> Table:
    current = status.get("currentStep", 0)
    running = status.get("candidateRevision") is not None and status.get("phase") in ("Progressing", "Paused")
    table = Table(title="Steps", title_justify="left", show_header=False, box=None)
    warmup, state = spec.get("strategy", {}).get("warmup"), status.get("warmup") or {}
    warming = bool(warmup and running and current == 0 and state and not state.get("passedAt"))
    if warmup:
        name = f"warm-up: mirror {warmup.get('mirrorPercent', 10)}% until p95 < {warmup.get('maxLatency')}"
        if state.get("passedAt") or (running and current > 0) or status.get("phase") == "Completed":
            marker, style = "✔", "green"
        elif warming:
            marker, style, name = "▶", "bold cyan", f"{name} ({state.get('message', '')})"
        else:
            marker, style = "·", "dim"
        table.add_row(Text(marker, style=style), Text(f"0. {name}", style=style))
    for index, step in enumerate(spec.get("strategy", {}).get("steps", [])):
        if running and index == current and not warming:
            marker, style = "▶", "bold cyan"
        elif (running and index < current) or status.get("phase") == "Completed":
            marker, style = "✔", "green"
        else:
            marker, style = "·", "dim"
        table.add_row(Text(marker, style=style), Text(f"{index + 1}. {_step_name(step)}", style=style))
    return table


def traffic_view(status: dict[str, Any]) -> Table:
    table = Table(title="Traffic", title_justify="left", show_header=False, box=None)
    for label, value in (("weight", status.get("canaryWeight", 0)), ("mirror", status.get("mirrorPercent", 0))):
        table.add_row(label, ProgressBar(total=100, completed=value, width=40), f"{value:>3}%")
    return table


def revisions_view(status: dict[str, Any], deployments: Iterable[dict[str, Any]],
                   pods: Iterable[dict[str, Any]]) -> Table:
    roles = {status.get("stableRevision"): "stable", status.get("candidateRevision"): "candidate",
             status.get("previousStableRevision"): "previous (warm)"}
    table = Table(title="Revisions", title_justify="left")
    for column in ("role", "revision", "ready", "pods", "GPUs per pod"):
        table.add_column(column)
    pods_by_revision: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        pods_by_revision.setdefault(pod.get("metadata", {}).get("labels", {}).get(REVISION_LABEL, ""), []).append(pod)
    for deployment in deployments:
        revision = deployment.get("metadata", {}).get("labels", {}).get(REVISION_LABEL)
        if revision not in roles or revision is None:
            continue
        ready = deployment.get("status", {}).get("readyReplicas", 0)
        wanted = deployment.get("spec", {}).get("replicas", 0)
        phases = sorted(pod.get("status", {}).get("phase", "?") for pod in pods_by_revision.get(revision, []))
        gpus = pod_gpus(deployment.get("spec", {}).get("template", {}))
        table.add_row(roles[revision], revision, f"{ready}/{wanted}", ", ".join(phases) or "-", str(gpus))
    return table


def guardrails_view(analysis: dict[str, Any]) -> Table:
    table = Table(title=f"Analysis: {analysis.get('verdict', '-')} {analysis.get('reason', '')}".rstrip(),
                  title_justify="left")
    for column in ("guardrail", "candidate", "stable", "evidence / threshold", "outcome"):
        table.add_column(column)
    for name, guardrail in analysis.get("guardrails", {}).items():
        evidence = guardrail.get("evidence")
        threshold = guardrail.get("evidenceThreshold")
        outcome = guardrail.get("outcome", "-")
        table.add_row(name, _number(guardrail.get("value")), _number(guardrail.get("stable")),
                      f"{evidence:.2f} / {threshold:.2f}" if evidence is not None and threshold is not None else "-",
                      Text(outcome, style=OUTCOME_STYLE.get(outcome, "")))
    return table


def ab_view(ab: dict[str, Any]) -> RenderableType:
    samples, needed = ab.get("samples", 0), ab.get("samplesNeeded")
    evidence = max(ab.get("evidence", {}).values(), default=0.0)
    rows = Table(title=f"A/B test on {ab.get('metric')}: {ab.get('verdict') or 'Inconclusive'}", title_justify="left",
                 show_header=False, box=None)
    rows.add_row("samples", ProgressBar(total=needed or 1, completed=min(samples, needed or 1), width=40),
                 f"{samples:,} / {needed:,}" if needed else f"{samples:,} (design pending)")
    rows.add_row("rates", f"stable {_number(ab.get('stableRate'))}  candidate {_number(ab.get('candidateRate'))}",
                 f"effect {_percent(ab.get('effect'))}")
    bounds = ab.get("bounds")
    rows.add_row("p-value", f"{min(1.0, math.exp(-evidence)):.4f}",
                 f"MDE bounds (log rate ratio) {bounds[0]:.3f}..{bounds[1]:.3f}" if bounds else "")
    return rows


def decisions_view(decisions: list[dict[str, Any]], last: int = 5) -> Table:
    table = Table(title="Decisions", title_justify="left")
    for column in ("at", "step", "test", "verdict", "p-value", "effect"):
        table.add_column(column)
    for decision in decisions[-last:]:
        table.add_row(decision.get("at", ""), str(decision.get("step", 0) + 1), decision.get("test", ""),
                      decision.get("verdict", ""), _number(decision.get("pValue")), _number(decision.get("effect")))
    return table


# Standing conditions a reader must not miss: (type, the status that is bad).
WARNINGS = (("ErrorsUnwatched", "True"), ("RouteManaged", "False"), ("RouteAccepted", "False"),
            ("RouteAccepted", "Unknown"), ("ComparisonBlocked", "True"), ("ScrapesSlow", "True"))


def warnings_view(status: dict[str, Any]) -> list[Text]:
    """One line for each standing condition that leaves something unwatched or untouched."""
    bad = {(c.get("type"), c.get("status")): c for c in status.get("conditions") or []}
    return [Text.assemble((f"! {type_}: ", "bold yellow"), str(bad[(type_, value)].get("message", "")))
            for type_, value in WARNINGS if (type_, value) in bad]


def _rate(value: float | None, bounds: list[float] | None) -> str:
    """A rate and its confidence sequence, e.g. 6.1% [4.5%, 8.0%]."""
    shown = "-" if value is None else f"{100 * value:.1f}%"
    return f"{shown} [{100 * bounds[0]:.1f}%, {100 * bounds[1]:.1f}%]" if bounds else shown


def comparison_view(comparison: dict[str, Any]) -> Table:
    """A shadow step's comparison of answers: both disagreement rates with their confidence sequences,
    each test's evidence, and where the answers differ most."""
    breached = comparison.get("breached") or []
    verdict = f"breached: {', '.join(breached)}" if breached else ("passed (noWorse)" if comparison.get("passed")
                                                                  else "no breach")
    table = Table(title=f"Comparison of answers: {verdict}", title_justify="left", show_header=False, box=None)
    table.add_row("compared", f"{comparison.get('pairs', 0):,.0f} requests, {comparison.get('twice', 0):,.0f} "
                  "answered twice by the stable")
    table.add_row("candidate differs", _rate(comparison.get("candidateRate"), comparison.get("candidateInterval")))
    table.add_row("stable differs from itself", _rate(comparison.get("stableRate"), comparison.get("stableInterval")))
    thresholds = comparison.get("threshold") or {}
    for name, evidence in (comparison.get("evidence") or {}).items():
        table.add_row(f"{name} e-value", f"log {evidence:.2f} / {thresholds.get(name, math.nan):.2f}")
    if comparison.get("differsMost"):
        table.add_row("differs most", ", ".join(f"{field} ({count:,.0f})"
                                                for field, count in comparison["differsMost"].items()))
    for title, key in (("not compared", "failures"), ("dropped", "skipped")):
        if comparison.get(key):
            table.add_row(title, ", ".join(f"{reason} {count:,.0f}" for reason, count in comparison[key].items()))
    labels = comparison.get("labels")
    if labels:
        table.add_row("labelled", f"{labels.get('labelled', 0):,.0f} requests (only the stable right "
                      f"{labels.get('stableOnly', 0):,.0f}, only the candidate {labels.get('candidateOnly', 0):,.0f};"
                      f" {labels.get('unlabelled', 0):,.0f} without a label in their window)")
        table.add_row("stable accuracy", _rate(labels.get("stableAccuracy"), labels.get("stableInterval")))
        table.add_row("candidate accuracy", _rate(labels.get("candidateAccuracy"), labels.get("candidateInterval")))
        if labels.get("errorIncreaseInterval"):
            low, high = labels["errorIncreaseInterval"]
            table.add_row("mean absolute error", f"stable {labels.get('stableError', 0):.4g}, candidate "
                          f"{labels.get('candidateError', 0):.4g} (the candidate's larger by [{low:.4g}, {high:.4g}])")
        if labels.get("feedback"):
            table.add_row("feedback", ", ".join(f"{reason} {count:,.0f}"
                                                for reason, count in labels["feedback"].items()))
    judge = comparison.get("judge")
    if judge:
        _judge_rows(table, judge)
    return table


def _judge_rows(table: Table, judge: dict[str, Any]) -> None:
    preferred = judge.get("preferred") or {}
    table.add_row("judged", f"{judge.get('judged', 0):,.0f} pairs: the stable preferred on "
                  f"{preferred.get('stable', 0):,.0f}, the candidate on {preferred.get('candidate', 0):,.0f}, "
                  f"{preferred.get('tie', 0):,.0f} ties")
    table.add_row("stable wins", _rate(judge.get("stableWins"), judge.get("stableWinsInterval")))
    bias, swapped = judge.get("positionBias"), judge.get("swapped") or {}
    asked_twice = swapped.get("consistent", 0) + swapped.get("inconsistent", 0)
    table.add_row("position bias", ("-" if bias is None else f"{100 * bias:+.1f} points toward the first answer")
                  + (f"; the same verdict both ways on {swapped.get('consistent', 0):,.0f} of {asked_twice:,.0f}"
                     if asked_twice else ""))
    if judge.get("correctedInterval"):
        raw, corrected = judge.get("rawInterval") or [0.0, 1.0], judge["correctedInterval"]
        agreement = judge.get("agreement")
        table.add_row("stable share, judge", f"[{100 * raw[0]:.1f}%, {100 * raw[1]:.1f}%]")
        table.add_row("stable share, corrected", f"[{100 * corrected[0]:.1f}%, {100 * corrected[1]:.1f}%] by "
                      f"{judge.get('calibrationPairs', 0):,.0f} human preferences"
                      + ("" if agreement is None else f" (the judge agreed on {100 * agreement:.0f}%)"))
    for title, key in (("judge failed", "failures"), ("not judged", "skipped")):
        if judge.get(key):
            table.add_row(title, ", ".join(f"{reason} {count:,.0f}" for reason, count in judge[key].items()))


def judged_view(judged: dict[str, Any]) -> Group:
    """The judged pairs the judge was surest about (the same verdict both ways first), each way."""
    parts: list[RenderableType] = [Text(f"judge calls {judged.get('calls', 0):,} of a budget of "
                                        f"{judged.get('budget', 0):,}")]
    if not judged.get("kept"):
        return Group(*parts, Text("no judged pair kept (compare.samples keeps the surest N each way; 0 keeps none)"))
    for preferred in ("candidate", "stable"):
        pairs = judged.get(preferred) or []
        parts.append(Text(f"the judge preferred the {preferred}: {len(pairs)} kept", style="bold"))
        for pair in pairs:
            sure = {True: "the same both ways", False: "not the same swapped"}.get(pair.get("consistent"),
                                                                                    "asked once")
            table = Table(title=f"{pair.get('key') or '-'} ({sure}): {pair.get('question', '')}",
                          title_justify="left", expand=True)
            for side in ("stable", "candidate"):
                table.add_column(side + (" (preferred)" if side == preferred else ""), overflow="fold")
            table.add_row(str(pair.get("stable", "")), str(pair.get("candidate", "")))
            parts.append(table)
    return Group(*parts)


def diff_view(samples: list[dict[str, Any]]) -> Group:
    """The kept disagreements side by side: the stable's answer, the candidate's, the stable's second."""
    if not samples:
        return Group(Text("no disagreement kept (compare.samples keeps the last N; 0 keeps none)"))
    parts: list[RenderableType] = []
    for sample in samples:
        table = Table(title=f"{sample.get('method', '')} {sample.get('path', '')}: differs at "
                      f"{', '.join(sample.get('differsAt') or []) or '-'}", title_justify="left", expand=True)
        present = [side for side in ("stable", "candidate", "stable-again") if side in sample]
        for side in present:
            table.add_column(f"{side} ({(sample.get('status') or {}).get(side, '-')})", overflow="fold")
        table.add_row(*(str(sample[side]) for side in present))
        parts.append(table)
    return Group(*parts)


def rollout_view(rollout: dict[str, Any], deployments: Iterable[dict[str, Any]] = (),
                 pods: Iterable[dict[str, Any]] = ()) -> Group:
    meta, spec, status = rollout["metadata"], rollout.get("spec", {}), rollout.get("status", {})
    phase = status.get("phase", "Pending")
    header = Text.assemble((f"{meta.get('namespace', '')}/{meta['name']}  ", "bold"),
                           (phase, PHASE_STYLE.get(phase, "")), f"  {status.get('stepLabel', '')}  ",
                           (status.get("message", ""), "dim"))
    parts: list[RenderableType] = [header, *warnings_view(status), steps_view(spec, status), traffic_view(status),
                                   revisions_view(status, deployments, pods)]
    analysis = status.get("analysis")
    if analysis:
        parts.append(guardrails_view(analysis))
        if analysis.get("abTest"):
            parts.append(ab_view(analysis["abTest"]))
        if analysis.get("comparison"):
            parts.append(comparison_view(analysis["comparison"]))
    if status.get("cost"):
        parts.append(cost_view(status["cost"]))
    if status.get("decisions"):
        parts.append(decisions_view(status["decisions"]))
    return Group(*parts)


def _dollars(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def cost_view(cost: dict[str, Any]) -> Table:
    title = f"Cost (requests/s over the minute before {cost.get('measuredAt', '')})"
    if cost.get("reason"):
        title += f" — last reading failed: {cost['reason']}"
    table = Table(title=title, title_justify="left")
    for column in ("version", "GPUs", "requests/s", "per 1M requests", "at utilization", "monthly"):
        table.add_column(column)
    for role in ("stable", "candidate"):
        version = cost.get(role)
        if version:
            rate = version.get("requestsPerSecond")
            table.add_row(f"{role} {version.get('revision', '')}", str(version.get("gpus", 0)),
                          "-" if rate is None else f"{rate:,.2f}", _dollars(version.get("perMillion")),
                          _dollars(version.get("effectivePerMillion")), _dollars(version.get("monthly")))
    return table


def list_view(rollouts: Iterable[dict[str, Any]]) -> Table:
    table = Table()
    for column in ("namespace", "name", "phase", "step", "weight", "mirror", "verdict", "message"):
        table.add_column(column)
    for rollout in rollouts:
        status = rollout.get("status", {})
        phase = status.get("phase", "Pending")
        table.add_row(rollout["metadata"].get("namespace", ""), rollout["metadata"]["name"],
                      Text(phase, style=PHASE_STYLE.get(phase, "")), status.get("stepLabel", ""),
                      f"{status.get('canaryWeight', 0)}%", f"{status.get('mirrorPercent', 0)}%",
                      status.get("verdict") or "", status.get("message", "")[:60])
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2%}"
