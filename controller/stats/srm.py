"""Sample-ratio mismatch: do the observed counts per arm fit the configured traffic split?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from controller.stats.results import check_probability

# Industry practice: a mismatch is an alarm that stops the analysis, so it must be rare by chance.
DEFAULT_SRM_ALPHA = 0.001
# Below five expected observations in an arm the chi-square approximation is not to be trusted.
MIN_EXPECTED_COUNT = 5.0


@dataclass(frozen=True)
class SRMResult:
    """Chi-square goodness of fit of the observed counts per arm against the split weights."""

    observed: tuple[float, ...]
    weights: tuple[float, ...]
    expected: tuple[float, ...]
    alpha: float
    statistic: float
    pvalue: float
    mismatch: bool
    insufficient_data: bool = False


def sample_ratio_mismatch(
    observed: Sequence[float], weights: Sequence[float], *, alpha: float = DEFAULT_SRM_ALPHA
) -> SRMResult:
    """Test observed counts (one per arm) against positive split weights in the same order.

    Leave out arms configured at weight 0. Too few observations to trust the test give
    `insufficient_data` and never a mismatch.
    """
    check_probability(alpha, "alpha")
    counts = np.asarray(observed, dtype=np.float64)
    shares = np.asarray(weights, dtype=np.float64)
    if counts.ndim != 1 or counts.shape != shares.shape or counts.size < 2:
        raise ValueError("need one observed count and one weight for each of at least two arms")
    if not (np.all(np.isfinite(counts)) and np.all(counts >= 0)):
        raise ValueError("observed counts must be finite and non-negative")
    if not (np.all(np.isfinite(shares)) and np.all(shares > 0)):
        raise ValueError("weights must be finite and positive; leave out arms at weight 0")
    total = float(counts.sum())
    expected = total * shares / shares.sum()
    if total == 0 or float(expected.min()) < MIN_EXPECTED_COUNT:
        statistic, pvalue, insufficient = 0.0, 1.0, True
    else:
        tested = stats.chisquare(counts, expected)
        statistic, pvalue, insufficient = float(tested.statistic), float(tested.pvalue), False
    return SRMResult(
        observed=tuple(float(c) for c in counts),
        weights=tuple(float(w) for w in shares),
        expected=tuple(float(e) for e in expected),
        alpha=float(alpha),
        statistic=statistic,
        pvalue=pvalue,
        mismatch=pvalue < alpha,
        insufficient_data=insufficient,
    )
