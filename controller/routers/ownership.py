"""Whose route rule is it: the operator manages a rule only when it was given one.

A rule is ours to manage when it already sends traffic to the rollout's own `<name>-stable`
Service, or when the route's owner hands it over with the annotation `HANDED_TO` naming the
rollout. `ruleName`/`routeName` only choose among such rules. Anything else is refused and
nothing is written: a ModelRollout must never be a way to take over another team's traffic.

On its first write the operator records, in the route's `MANAGED` annotation, the backends of
its own Services the rule had then. A recorded rule that no longer names our Services was taken
back by its owner; it is not written again until it is handed back. On deletion the rule gets
those backends back and loses the ones we added (Flagger's `Finalize`).

Pure: dicts in, dicts out.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.api import GROUP, RouteAccess

Obj = dict[str, Any]

# Set by the route's owner: the rollouts (comma-separated names) that may manage a rule of this route.
HANDED_TO = f"{GROUP}/handed-to"
# Ours: per rollout, the backends of its Services the managed rule had before we first wrote it.
MANAGED = f"{GROUP}/managed-rules"
HEADER_SUFFIX = "-modelrollout-header"
# In a record: the backends a handed-over rule had of its own, given back on release.
HANDED_KEY = "handed"


@dataclass(frozen=True)
class RouteShape:
    """Where a provider keeps its rules and backends, and how it names them to a human."""

    kind: str  # HTTPRoute, VirtualService
    rules_field: str  # spec.<field>: rules, http
    refs_field: str  # rule.<field>: backendRefs, route
    rule_word: str  # rule, http route
    service_of: Callable[[Obj], str | None]  # the Service a backend sends to; None: not a Service
    drop_our_mirror: Callable[[Obj, str], Obj]  # the rule without a mirror to our candidate or comparator


@dataclass(frozen=True)
class Access:
    state: RouteAccess
    index: int | None = None
    message: str = ""

    @property
    def writable(self) -> bool:
        return self.state in (RouteAccess.MANAGED, RouteAccess.HANDED)


def rollout_of(stable: str) -> str:
    """The rollout whose stable Service this is (workloads names it `<rollout>-stable`)."""
    return stable.removesuffix("-stable")


def mirror_targets(candidate: str) -> tuple[str, str]:
    """The Services a rollout's mirror may send to: its candidate, or its shadow step's comparator
    (`<rollout>-compare`, between the mirror and both models)."""
    return candidate, f"{candidate.removesuffix('-candidate')}-compare"


def serves_whole_rule(route: Obj, stable: str) -> bool:
    """Whether the rule was handed to the rollout: then its owner's backends step aside while it is managed."""
    record = _records(route).get(rollout_of(stable))
    return isinstance(record, dict) and HANDED_KEY in record


def _records(route: Obj) -> dict[str, Any]:
    raw = (route.get("metadata", {}).get("annotations") or {}).get(MANAGED)
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _handed_to(route: Obj) -> set[str]:
    raw = (route.get("metadata", {}).get("annotations") or {}).get(HANDED_TO) or ""
    return {name.strip() for name in raw.split(",") if name.strip()}


def _rules(route: Obj, shape: RouteShape) -> list[Obj]:
    rules: list[Obj] = route.get("spec", {}).get(shape.rules_field) or []
    return rules


def _is_header_rule(rule: Obj) -> bool:
    return str(rule.get("name", "")).endswith(HEADER_SUFFIX)


def _names_ours(rule: Obj, shape: RouteShape, services: tuple[str, ...]) -> bool:
    return any(shape.service_of(ref) in services for ref in rule.get(shape.refs_field) or [])


def access(route: Obj, shape: RouteShape, stable: str, candidate: str, section: str | None) -> Access:
    """May this rollout write a rule of this route, and which one."""
    rollout = rollout_of(stable)
    name = route.get("metadata", {}).get("name", "")
    rules = _rules(route, shape)
    ours = [i for i, rule in enumerate(rules) if not _is_header_rule(rule)
            and _names_ours(rule, shape, (stable, candidate)) and (section is None or rule.get("name") == section)]
    if ours:
        return Access(RouteAccess.MANAGED, ours[0])
    which = f"{shape.rule_word} named {section!r}" if section else f"any {shape.rule_word}"
    if rollout in _records(route):
        return Access(RouteAccess.TAKEN_BACK, message=(
            f"{shape.kind} {name} {which} no longer sends traffic to Service {stable}: its owner took it back. "
            f"Nothing is written until it is handed back (add {stable} to the {shape.rule_word}, "
            f"or remove {rollout!r} from the annotation {MANAGED})"))
    if rollout in _handed_to(route):
        return _handed(rules, shape, name, section)
    if section is not None and not any(rule.get("name") == section for rule in rules):
        return Access(RouteAccess.NOT_OURS, message=f"{shape.kind} {name} has no {which}: nothing written")
    return Access(RouteAccess.NOT_OURS, message=(
        f"{shape.kind} {name} {which} sends no traffic to Service {stable}, and the route's annotation "
        f"{HANDED_TO} does not name {rollout!r}: refused, nothing written"))


def _handed(rules: list[Obj], shape: RouteShape, name: str, section: str | None) -> Access:
    """The rule a hand-over gives: the one named by `section`, or the route's only rule."""
    plain = [i for i, rule in enumerate(rules) if not _is_header_rule(rule)]
    named = [i for i in plain if rules[i].get("name") == section] if section is not None else plain
    if len(named) == 1:
        return Access(RouteAccess.HANDED, named[0])
    return Access(RouteAccess.NOT_OURS, message=(
        f"{shape.kind} {name} is handed to this rollout but has no single {shape.rule_word} to manage: "
        f"{f'none is named {section!r}' if section else 'it has several; choose one by name'}"))


def recorded(route: Obj, shape: RouteShape, found: Access, stable: str, candidate: str) -> Obj:
    """The route with this rollout's record added, unless it has one: the backends of our
    Services that the rule has before our first write, and for a rule handed over, its own
    backends too (`HANDED_KEY`): the rollout serves the whole rule until it gives it back."""
    rollout = rollout_of(stable)
    records = _records(route)
    if rollout in records or found.index is None:
        return route
    refs = _rules(route, shape)[found.index].get(shape.refs_field) or []
    mine = [ref for ref in refs if shape.service_of(ref) in (stable, candidate)]
    records[rollout] = {shape.refs_field: mine}
    if found.state == RouteAccess.HANDED:
        records[rollout][HANDED_KEY] = [ref for ref in refs if shape.service_of(ref) not in (stable, candidate)]
    updated = copy.deepcopy(route)
    annotations = updated.setdefault("metadata", {}).get("annotations") or {}
    updated["metadata"]["annotations"] = {**annotations, MANAGED: json.dumps(records, sort_keys=True)}
    return updated


@dataclass(frozen=True)
class Release:
    """The route as deletion leaves it, and whether it still sends traffic to our Services."""

    route: Obj
    names_our_services: bool
    access: RouteAccess
    described: str  # e.g. "HTTPRoute scorer", for messages


def release(route: Obj, shape: RouteShape, stable: str, candidate: str, section: str | None) -> Release:
    """Give the rule back: the backends of our Services it had before us, none we added, no mirror
    or header rule of ours, and no record. A rule not ours (any more) is not touched."""
    rollout = rollout_of(stable)
    found = access(route, shape, stable, candidate, section)
    updated = copy.deepcopy(route)
    rules = [rule for rule in _rules(updated, shape) if rule.get("name") != f"{candidate}{HEADER_SUFFIX}"]
    records = _records(route)
    record = records.pop(rollout, None)
    if found.writable and found.index is not None:
        index = next(i for i, rule in enumerate(rules) if rule == _rules(route, shape)[found.index])
        rule = shape.drop_our_mirror(rules[index], candidate)
        others = [ref for ref in rule.get(shape.refs_field) or []
                  if shape.service_of(ref) not in (stable, candidate)]
        if record is not None:
            before = [*(record.get(shape.refs_field) or []), *(record.get(HANDED_KEY) or [])]
        else:  # Managed before records existed: keep the stable as it is, drop the candidate.
            before = [ref for ref in rule.get(shape.refs_field) or [] if shape.service_of(ref) == stable]
        rule[shape.refs_field] = [*before, *others]
        rules[index] = rule
    updated.setdefault("spec", {})[shape.rules_field] = rules
    annotations = dict(updated.get("metadata", {}).get("annotations") or {})
    if records:
        annotations[MANAGED] = json.dumps(records, sort_keys=True)
    else:
        annotations.pop(MANAGED, None)
    updated.setdefault("metadata", {})["annotations"] = annotations or None
    if not annotations:
        updated["metadata"].pop("annotations")
    still = any(_names_ours(rule, shape, (stable, candidate)) for rule in rules)
    return Release(updated, still, found.state, f"{shape.kind} {route.get('metadata', {}).get('name', '')}")
