"""Pieces shared by the result objects: the confidence interval pair and the names of alternatives."""

from __future__ import annotations

from typing import Literal, NamedTuple

# Always read as "candidate <alternative> stable", as scipy reads "x <alternative> y".
Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES: tuple[Alternative, ...] = ("two-sided", "greater", "less")


class ConfidenceInterval(NamedTuple):
    """Bounds of an interval for candidate − stable, as scipy's `ConfidenceInterval`."""

    low: float
    high: float


def check_alternative(alternative: str) -> Alternative:
    if alternative == "two-sided":
        return "two-sided"
    if alternative == "greater":
        return "greater"
    if alternative == "less":
        return "less"
    raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")


def check_probability(value: float, name: str) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, not {value!r}")
    return float(value)
