"""Kubernetes-style conditions: lastTransitionTime moves only when the status flips."""

from __future__ import annotations

from typing import Literal

from controller.api import Condition


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: str,
) -> list[Condition]:
    previous = find_condition(conditions, type_)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=since)
    return [c for c in conditions if c.type != type_] + [updated]


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in conditions)
