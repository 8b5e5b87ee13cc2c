"""What one mirrored request came to, from the answers the comparator got (pure).

Three arms, as Diffy has them: the stable and the candidate answer every compared request; a share
`noisePercent` of them, drawn before any answer, the stable answers a second time, to measure its
own nondeterminism. A request lands in exactly one cell of `stats.paired.DISAGREEMENT_CELLS`, or in
none when it could not be compared (an error, a timeout, an answer that is not the format, an
answer over the size cap); then it is counted by its reason and side, never read as agreement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from controller.comparator.formats import Comparison, Format, Problem, Rules, compare
from controller.stats.paired import DISAGREEMENT_CELLS


class Side(StrEnum):
    STABLE = "stable"
    CANDIDATE = "candidate"
    STABLE_AGAIN = "stable-again"


class Failure(StrEnum):
    """Why an answer was not compared."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # no connection, or it broke
    SERVER_ERROR = "server-error"  # HTTP 5xx
    TOO_LARGE = "too-large"  # over compare.maxBodyBytes
    FORMAT = "format"  # not the format
    MISSING_PATH = "missing-path"  # the compared paths select nothing


@dataclass(frozen=True)
class Answer:
    """One arm's answer, as the comparator received it; `failure` set when there is none to compare."""

    status: int
    body: bytes
    seconds: float
    failure: Failure | None = None
    first_byte_seconds: float | None = None


@dataclass(frozen=True)
class Outcome:
    """Where the request is counted: its cell, or the sides that failed and why."""

    cell: str | None
    failures: tuple[tuple[Side, Failure], ...] = ()
    # candidate seconds / stable seconds on the same request, when both answered.
    latency_ratio: float | None = None
    delta: float | None = None
    differs_at: tuple[str, ...] = ()
    candidate: Comparison | None = None


def _failed(side: Side, answer: Answer) -> tuple[Side, Failure] | None:
    if answer.failure is not None:
        return side, answer.failure
    if answer.status >= 500:
        return side, Failure.SERVER_ERROR
    return None


def _versus(format_: Format, rules: Rules, first: Answer, second: Answer) -> Comparison:
    """Two answers that arrived: a different status is a different answer; else by format."""
    if first.status != second.status:
        return Comparison(False, ("status",))
    return compare(format_, rules, first.body, second.body)


def outcome(format_: Format, rules: Rules, stable: Answer, candidate: Answer, again: Answer | None) -> Outcome:
    """The cell of a compared request. A second stable answer that failed leaves the request counted
    once (its failure is counted too): the noise share then falls a little below noisePercent."""
    failures = [found for found in (_failed(Side.STABLE, stable), _failed(Side.CANDIDATE, candidate)) if found]
    ratio = candidate.seconds / stable.seconds if not failures and stable.seconds > 0 else None
    if failures:
        return Outcome(None, tuple(failures), ratio)
    versus = _versus(format_, rules, stable, candidate)
    if versus.problem is not None:
        side = {0: (Side.STABLE,), 1: (Side.CANDIDATE,)}.get(-1 if versus.side is None else versus.side,
                                                             (Side.STABLE, Side.CANDIDATE))
        failure = Failure.FORMAT if versus.problem == Problem.FORMAT else Failure.MISSING_PATH
        return Outcome(None, tuple((s, failure) for s in side), ratio)
    differs = "differs" if not versus.same else "same"
    noise = None
    again_failure = _failed(Side.STABLE_AGAIN, again) if again is not None else None
    if again is not None and again_failure is None:
        self_check = _versus(format_, rules, stable, again)
        if self_check.problem is None:
            noise = "differs" if not self_check.same else "same"
        else:
            again_failure = (Side.STABLE_AGAIN, Failure.FORMAT)
    cell = f"once/{differs}" if noise is None else f"twice/{differs}/{noise}"
    assert cell in DISAGREEMENT_CELLS
    return Outcome(cell, (again_failure,) if again_failure else (), ratio, versus.delta, versus.differs_at, versus)


_INDEX = re.compile(r"\[\d+\]")


def field_label(where: str) -> str:
    """A differing field as a metric label: array indices folded, so that labels stay few."""
    return _INDEX.sub("[*]", where)[:80]
