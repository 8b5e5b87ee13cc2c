"""Histogram bucket counts: validation, and Prometheus cumulative `_bucket` series turned into per-bucket counts."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def as_counts(values: npt.ArrayLike, name: str) -> FloatArray:
    """A 1-D array of finite, non-negative counts (floats: Prometheus' `increase()` extrapolates)."""
    counts = np.asarray(values, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of counts")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"{name} must hold finite, non-negative counts")
    return counts


def paired_counts(stable: npt.ArrayLike, candidate: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Both arms' counts over the same ordered buckets."""
    stable_counts = as_counts(stable, "stable counts")
    candidate_counts = as_counts(candidate, "candidate counts")
    if stable_counts.shape != candidate_counts.shape:
        raise ValueError(
            f"stable and candidate must count the same buckets: {stable_counts.size} != {candidate_counts.size}"
        )
    return stable_counts, candidate_counts


def counts_from_cumulative(cumulative: npt.ArrayLike) -> FloatArray:
    """Per-bucket counts from a Prometheus histogram's cumulative `_bucket` values, ordered by `le`.

    The last value is the `le="+Inf"` bucket (equal to `_count`): its per-bucket count is what lies
    above the largest finite bound. Leave it out and observations above that bound are lost.
    """
    totals = as_counts(cumulative, "cumulative counts")
    # increase() extrapolates each `le` series on its own, so a bucket can dip below the one before;
    # histogram_quantile() repairs that the same way.
    monotone = np.maximum.accumulate(totals)
    return np.diff(monotone, prepend=0.0)
