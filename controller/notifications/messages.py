"""Which transitions are told, and the two message formats: a generic JSON webhook and Slack's.

Pure: a transition (the status before, the engine's Events and the status after) in, messages out.
Each message carries the verdict and the numbers behind it, never a URL or a token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller import api
from controller.engine import Action, EmitEvent

Event = api.NotificationEvent

# The engine's Event reasons that are notifications of their own.
_BY_REASON = {
    "RolloutStarted": Event.STARTED,
    "RolloutRestarted": Event.STARTED,
    "StepCompleted": Event.STEP_COMPLETED,
    "AnalysisHalted": Event.ANALYSIS_HALTED,
    "RolledBack": Event.ROLLED_BACK,
    "Promoted": Event.COMPLETED,
    "Undone": Event.UNDONE,
}
_SLACK_COLOR = {Event.ROLLED_BACK: "#d73a49", Event.ANALYSIS_HALTED: "#d73a49", Event.UNDONE: "#e36209",
                Event.PAUSED: "#dbab09", Event.COMPLETED: "#28a745"}


@dataclass(frozen=True)
class Notification:
    event: Event
    namespace: str
    name: str
    uid: str
    message: str
    at: datetime
    receivers: tuple[api.Receiver, ...]
    # The numbers, in the webhook's camelCase: phase, step, weight, mirror, verdict, analysis.
    facts: dict[str, Any] = field(default_factory=dict)


def notifications(body: dict[str, Any], spec: api.ModelRolloutSpec, before: api.ModelRolloutStatus,
                  after: api.ModelRolloutStatus, actions: Iterable[Action], at: datetime) -> list[Notification]:
    """The notifications a stored transition owes, in the order the engine told its Events."""
    if spec.notifications is None:
        return []
    told: dict[Event, str] = {}
    for action in actions:
        if isinstance(action, EmitEvent) and action.reason in _BY_REASON:
            told.setdefault(_BY_REASON[action.reason], action.message)
    # Any pause that is not a halt (the user's, a pause step's, an analysis error's) is a Paused.
    if after.phase == api.Phase.PAUSED and before.phase != api.Phase.PAUSED \
            and after.pause_reason != api.PauseReason.HALTED:
        told.setdefault(Event.PAUSED, after.message or f"paused ({after.pause_reason})")
    meta = body["metadata"]
    facts = _facts(after, len(spec.strategy.steps))
    result = []
    for event, message in told.items():
        receivers = tuple(r for r in spec.notifications.receivers if r.events is None or event in r.events)
        if receivers:
            result.append(Notification(event, meta["namespace"], meta["name"], str(meta.get("uid", "")), message,
                                       at, receivers, facts))
    return result


def _facts(status: api.ModelRolloutStatus, steps: int) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "phase": status.phase.value,
        "step": f"{min(status.current_step + 1, steps)}/{steps}",
        "weight": status.canary_weight,
        "mirror": status.mirror_percent,
        "verdict": status.verdict.value if status.verdict else None,
        "stableRevision": status.stable_revision,
        "candidateRevision": status.candidate_revision,
    }
    analysis = status.analysis
    if analysis is not None:
        facts["analysis"] = {
            "verdict": analysis.verdict.value,
            "reason": analysis.reason,
            "decidedBy": analysis.decided_by,
            "guardrails": {
                name: {"outcome": g.outcome.value, "value": g.value, "stable": g.stable, "evidence": g.evidence,
                       "evidenceThreshold": g.evidence_threshold}
                for name, g in analysis.guardrails.items()
            },
        }
        ab = analysis.ab_test
        if ab is not None:
            evidence = max(ab.evidence.values(), default=0.0)
            facts["analysis"]["abTest"] = {
                "metric": ab.metric, "verdict": ab.verdict.value if ab.verdict else None,
                "samples": ab.samples, "samplesNeeded": ab.samples_needed, "stableRate": ab.stable_rate,
                "candidateRate": ab.candidate_rate, "effect": ab.effect,
                "pValue": min(1.0, math.exp(-evidence)),
            }
    if status.decisions:
        facts["lastDecision"] = status.decisions[-1].model_dump(mode="json", by_alias=True, exclude_none=True)
    return facts


def webhook_body(notification: Notification) -> dict[str, Any]:
    return {
        "event": notification.event.value,
        "rollout": {"namespace": notification.namespace, "name": notification.name, "uid": notification.uid},
        "message": notification.message,
        "at": notification.at.isoformat(timespec="milliseconds"),
        **notification.facts,
    }


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def summary_lines(notification: Notification) -> list[str]:
    """The numbers, one line each, for a chat message."""
    facts = notification.facts
    lines = [f"step {facts['step']} · weight {facts['weight']}% · mirror {facts['mirror']}% · phase {facts['phase']}"
             + (f" · verdict {facts['verdict']}" if facts.get("verdict") else "")]
    analysis = facts.get("analysis")
    if analysis:
        lines.append(f"analysis {analysis['verdict']}" + (f": {analysis['reason']}" if analysis["reason"] else ""))
        for name, g in analysis["guardrails"].items():
            evidence = (f", evidence {g['evidence']:.2f}/{g['evidenceThreshold']:.2f}"
                        if g["evidence"] is not None and g["evidenceThreshold"] is not None else "")
            lines.append(f"• {name}: candidate {_number(g['value'])} vs stable {_number(g['stable'])}"
                         f" ({g['outcome']}{evidence})")
        ab = analysis.get("abTest")
        if ab:
            needed = f"/{ab['samplesNeeded']:,}" if ab["samplesNeeded"] else ""
            lines.append(f"• A/B on {ab['metric']}: {ab['verdict'] or 'Inconclusive'}, samples {ab['samples']:,}"
                         f"{needed}, p-value {ab['pValue']:.4f}, effect {_number(ab['effect'])}")
    return lines


def slack_body(notification: Notification) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message: `text` for notifications, an attachment for the details."""
    title = f"{notification.event.value}: {notification.namespace}/{notification.name}"
    details = "\n".join(summary_lines(notification))
    return {
        "text": f"{title} — {notification.message}",
        "attachments": [{
            "color": _SLACK_COLOR.get(notification.event, "#0366d6"),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{notification.message}"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": details}},
            ],
        }],
    }
