"""Holm's step-down correction for testing several metrics of one rollout at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.stats.results import check_probability


@dataclass(frozen=True)
class HolmResult:
    """Holm-adjusted p-values and rejections, in the order the p-values were given."""

    pvalues: tuple[float, ...]
    alpha: float
    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]


def holm(pvalues: Sequence[float], *, alpha: float = 0.05) -> HolmResult:
    """Adjusted p_(i) = max over j ≤ i of min(1, (m − j + 1) p_(j)); reject where adjusted ≤ alpha.

    Controls the family-wise error rate under any dependence between the tests.
    """
    check_probability(alpha, "alpha")
    raw = np.asarray(pvalues, dtype=np.float64)
    if raw.ndim != 1 or not np.all((raw >= 0) & (raw <= 1)):
        raise ValueError("p-values must be a flat sequence of numbers in [0, 1]")
    order = np.argsort(raw, kind="stable")
    multipliers = raw.size - np.arange(raw.size)
    stepped = np.maximum.accumulate(np.minimum(multipliers * raw[order], 1.0))
    adjusted = np.empty_like(raw)
    adjusted[order] = stepped
    return HolmResult(
        pvalues=tuple(float(p) for p in raw),
        alpha=float(alpha),
        adjusted=tuple(float(p) for p in adjusted),
        rejected=tuple(bool(p <= alpha) for p in adjusted),
    )
