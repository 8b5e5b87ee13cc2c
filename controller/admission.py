"""The admission rules, run in Python: the CRD's own CEL (`x-kubernetes-validations`), one source.

Every rule is written once, as CEL beside the model it checks (api.py); the CRD carries it to the
apiserver, and the models run the same text here through a CEL interpreter
(`common-expression-language`, a binding of the Rust `cel-interpreter`), so the engine rejects the
specs admission rejects (a spec can predate a CRD upgrade) with the same message. The Kubernetes
CEL library functions the rules use (lists' isSorted, isURL, url().getHostname()) are given here.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import urlsplit

import cel
from pydantic import JsonValue

RULES = "x-kubernetes-validations"


def rule(text: str, message: str, field_path: str | None = None) -> dict[str, JsonValue]:
    """One admission rule: CEL over `self`, and the message both sides give when it is false."""
    validation: dict[str, JsonValue] = {"rule": text, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


def _is_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is part of the check
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc)


def _hostname(text: str) -> str:
    return urlsplit(text).hostname or ""


@functools.cache
def _program(text: str) -> Any:
    return cel.compile(text)


def violations(rules: list[JsonValue], value: Any) -> list[str]:
    """The messages of the rules `value` (the JSON form of the object, as the apiserver sees it) breaks."""
    texts = tuple((str(entry["rule"]), str(entry["message"])) for entry in rules if isinstance(entry, dict))
    return list(_violations(texts, json.dumps(value, sort_keys=True, separators=(",", ":"))))


# A reconcile parses its rollout's spec every time, and specs rarely change: the same object
# answers from here (converting it into CEL values is what costs).
@functools.lru_cache(maxsize=8192)
def _violations(rules: tuple[tuple[str, str], ...], value: str) -> tuple[str, ...]:
    context = cel.Context()
    context.add_function("isSorted", lambda items: list(items) == sorted(items))
    context.add_function("isURL", _is_url)
    context.add_function("url", lambda text: text)
    context.add_function("getHostname", _hostname)
    context.add_variable("self", json.loads(value))
    broken = []
    for text, message in rules:
        try:
            passed = _program(text).execute(context)
        except (RuntimeError, ValueError, TypeError) as error:
            broken.append(f"{message} (the rule could not be evaluated: {error})")
            continue
        if passed is not True:
            broken.append(message)
    return tuple(broken)


def check(rules: list[JsonValue], value: Any) -> None:
    """Raise ValueError with the first broken rule's message (pydantic turns it into a validation error)."""
    broken = violations(rules, value)
    if broken:
        raise ValueError(broken[0])
