"""Mann–Whitney U test and Hodges–Lehmann shift from grouped data: two arms' counts over the same histogram buckets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from controller.stats.histograms import FloatArray, paired_counts
from controller.stats.results import Alternative, check_alternative


@dataclass(frozen=True)
class RankTestResult:
    """Mann–Whitney test of candidate against stable; `statistic` is the candidate's U, as scipy's U1 for x."""

    stable_counts: tuple[float, ...]
    candidate_counts: tuple[float, ...]
    upper_bounds: tuple[float, ...]
    alternative: Alternative
    statistic: float
    z: float
    pvalue: float
    hodges_lehmann: float
    n_stable: float
    n_candidate: float
    probability_of_superiority: float
    insufficient_data: bool = False

    @property
    def samples(self) -> float:
        return min(self.n_stable, self.n_candidate)


def _check_bounds(upper_bounds: npt.ArrayLike, size: int) -> FloatArray:
    bounds = np.asarray(upper_bounds, dtype=np.float64)
    if bounds.shape != (size,):
        raise ValueError(f"need one upper bound per bucket: {bounds.size} bounds for {size} buckets")
    if np.any(np.isnan(bounds)) or np.any(np.isinf(bounds[:-1])) or np.any(np.diff(bounds) <= 0):
        raise ValueError("upper bounds must increase strictly; only the last may be +Inf")
    return bounds


def representative_values(upper_bounds: npt.ArrayLike) -> FloatArray:
    """A value for each bucket: its upper bound `le`, the value Prometheus itself reports for it.

    The +Inf bucket takes the largest finite bound (all that is known of it), so a shift among the
    slowest observations is understated, never invented.
    """
    bounds = np.asarray(upper_bounds, dtype=np.float64)
    finite = bounds[np.isfinite(bounds)]
    top = float(finite[-1]) if finite.size else 0.0
    return np.where(np.isfinite(bounds), bounds, top)


def hodges_lehmann_grouped(
    stable_counts: npt.ArrayLike, candidate_counts: npt.ArrayLike, values: npt.ArrayLike
) -> float:
    """Median of all pairwise differences candidate − stable, with each bucket's observations at `values`.

    The n_c * n_s differences take only K * K distinct (value, weight) pairs, so the median is a weighted
    median over bucket pairs. An even total weight splitting exactly at a value averages the two middle
    differences, as numpy's median does on the expanded pairs.
    """
    stable, candidate = paired_counts(stable_counts, candidate_counts)
    points = np.asarray(values, dtype=np.float64)
    if points.shape != stable.shape or not np.all(np.isfinite(points)):
        raise ValueError("need one finite value per bucket")
    if stable.sum() == 0 or candidate.sum() == 0:
        raise ValueError("the Hodges–Lehmann shift needs observations in both arms")
    differences = (points[:, None] - points[None, :]).ravel()
    weights = (candidate[:, None] * stable[None, :]).ravel()
    kept = weights > 0
    order = np.argsort(differences[kept], kind="stable")
    sorted_differences, cumulative = differences[kept][order], np.cumsum(weights[kept][order])
    half = cumulative[-1] / 2.0
    middle = int(np.searchsorted(cumulative, half, side="left"))
    if cumulative[middle] == half and middle + 1 < cumulative.size:
        return float((sorted_differences[middle] + sorted_differences[middle + 1]) / 2.0)
    return float(sorted_differences[middle])


def mann_whitney_grouped(
    stable_counts: npt.ArrayLike,
    candidate_counts: npt.ArrayLike,
    upper_bounds: npt.ArrayLike,
    *,
    alternative: Alternative = "two-sided",
) -> RankTestResult:
    """Mann–Whitney U of candidate against stable from per-bucket counts over the same ordered buckets.

    Each bucket is one tie group at its midrank; the variance carries the tie correction and the
    normal approximation a continuity correction, so U and the p-value equal
    `scipy.stats.mannwhitneyu(candidate, stable, method="asymptotic", use_continuity=True)` on the
    expanded observations. "greater" means the candidate tends to larger values: slower, for latency.
    `z` is the signed (candidate − stable) standardized U, continuity-corrected toward zero.
    """
    stable, candidate = paired_counts(stable_counts, candidate_counts)
    bounds = _check_bounds(upper_bounds, stable.size)
    alternative = check_alternative(alternative)
    n_stable, n_candidate = float(stable.sum()), float(candidate.sum())
    inputs = (tuple(float(c) for c in stable), tuple(float(c) for c in candidate), tuple(float(b) for b in bounds))
    if n_stable == 0 or n_candidate == 0:
        return RankTestResult(
            *inputs,
            alternative=alternative,
            statistic=0.0,
            z=0.0,
            pvalue=1.0,
            hodges_lehmann=0.0,
            n_stable=n_stable,
            n_candidate=n_candidate,
            probability_of_superiority=0.5,
            insufficient_data=True,
        )

    ties = stable + candidate
    n = n_stable + n_candidate
    midranks = np.cumsum(ties) - ties + (ties + 1.0) / 2.0
    u_candidate = float(np.dot(candidate, midranks)) - n_candidate * (n_candidate + 1.0) / 2.0
    u_stable = n_candidate * n_stable - u_candidate
    mean = n_candidate * n_stable / 2.0
    tie_term = float(np.sum(ties**3 - ties))
    variance = n_candidate * n_stable / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0))) if n > 1 else 0.0

    if variance <= 0:
        # Every observation in one bucket: the arms cannot be told apart.
        z, pvalue = 0.0, 1.0
    else:
        sd = math.sqrt(variance)
        deviation = u_candidate - mean
        z = math.copysign(max(abs(deviation) - 0.5, 0.0), deviation) / sd
        # The same arithmetic as scipy: the survival function of the U that the alternative points to.
        if alternative == "greater":
            pvalue = float(special.ndtr(-(u_candidate - mean - 0.5) / sd))
        elif alternative == "less":
            pvalue = float(special.ndtr(-(u_stable - mean - 0.5) / sd))
        else:
            pvalue = 2.0 * float(special.ndtr(-(max(u_candidate, u_stable) - mean - 0.5) / sd))
        pvalue = min(max(pvalue, 0.0), 1.0)

    return RankTestResult(
        *inputs,
        alternative=alternative,
        statistic=u_candidate,
        z=z,
        pvalue=pvalue,
        hodges_lehmann=hodges_lehmann_grouped(stable, candidate, representative_values(bounds)),
        n_stable=n_stable,
        n_candidate=n_candidate,
        probability_of_superiority=u_candidate / (n_candidate * n_stable),
    )
