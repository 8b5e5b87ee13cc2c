"""Drift between stable and candidate prediction histograms: PSI, grouped two-sample KS, Jensen–Shannon distance."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial import distance

from controller.stats.histograms import FloatArray, paired_counts

# Below this many observations in the smaller arm KS's asymptotic p-value is too small (7 % instead of
# 0.1 % at three): the exact one is computed instead, on the grouped data.
KS_EXACT_BELOW = 1000
KS_EXACT_LARGER_AT_MOST = 100_000  # the other arm, expanded to one value per observation: about 17 ms

# An empty bucket would make PSI infinite. Its share is floored at 0.01 %, the usual choice in
# monitoring tools; shares are not renormalized, so identical histograms still give exactly 0.
PSI_EPSILON = 1e-4


def _nonempty_pair(stable_counts: npt.ArrayLike, candidate_counts: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    stable, candidate = paired_counts(stable_counts, candidate_counts)
    if stable.sum() == 0 or candidate.sum() == 0:
        raise ValueError("drift needs observations in both histograms")
    return stable, candidate


def population_stability_index(stable_counts: npt.ArrayLike, candidate_counts: npt.ArrayLike) -> float:
    """PSI = sum (c_i − s_i) ln(c_i / s_i) over bucket shares; ≥ 0, and 0 for identical histograms."""
    stable, candidate = _nonempty_pair(stable_counts, candidate_counts)
    stable_share = np.maximum(stable / stable.sum(), PSI_EPSILON)
    candidate_share = np.maximum(candidate / candidate.sum(), PSI_EPSILON)
    return float(np.sum((candidate_share - stable_share) * np.log(candidate_share / stable_share)))


def jensen_shannon_distance(stable_counts: npt.ArrayLike, candidate_counts: npt.ArrayLike) -> float:
    """Jensen–Shannon distance in base 2 (scipy's `jensenshannon`): 0 for identical, 1 for disjoint."""
    stable, candidate = _nonempty_pair(stable_counts, candidate_counts)
    with np.errstate(invalid="ignore"):
        value = float(distance.jensenshannon(stable, candidate, base=2.0))
    # Rounding can leave the divergence a hair below zero, whose square root is NaN.
    return 0.0 if math.isnan(value) else min(max(value, 0.0), 1.0)


@dataclass(frozen=True)
class KSResult:
    """Two-sample Kolmogorov–Smirnov test on grouped data; `statistic` is the largest gap between the CDFs."""

    n_stable: float
    n_candidate: float
    statistic: float
    pvalue: float
    effective_n: float
    insufficient_data: bool = False


def ks_grouped(stable_counts: npt.ArrayLike, candidate_counts: npt.ArrayLike) -> KSResult:
    """KS statistic from bucket counts, with scipy's two-sided p-value: exact for small samples (Hodges 1958,
    "The significance probability of the Smirnov two-sample test", Arkiv för Matematik 3), else asymptotic
    (Smirnov 1948; `kstwo` at n_s n_c / (n_s + n_c)).

    The empirical CDFs jump only at bucket edges, so the statistic is exactly `ks_2samp`'s on data
    placed at one value per bucket. Grouping hides differences within a bucket: the test is conservative.
    """
    stable, candidate = paired_counts(stable_counts, candidate_counts)
    n_stable, n_candidate = float(stable.sum()), float(candidate.sum())
    effective_n = n_stable * n_candidate / (n_stable + n_candidate) if n_stable and n_candidate else 0.0
    if round(effective_n) < 1:
        return KSResult(n_stable, n_candidate, 0.0, 1.0, effective_n, insufficient_data=True)
    gaps = np.abs(np.cumsum(candidate) / n_candidate - np.cumsum(stable) / n_stable)
    statistic = float(np.max(gaps))
    if min(n_stable, n_candidate) < KS_EXACT_BELOW and max(n_stable, n_candidate) <= KS_EXACT_LARGER_AT_MOST:
        # One value per bucket, as many times as it counted (rounded: Prometheus' increase() extrapolates).
        whole = np.rint(stable).astype(np.int64), np.rint(candidate).astype(np.int64)
        if min(int(counts.sum()) for counts in whole) == 0:
            return KSResult(n_stable, n_candidate, 0.0, 1.0, effective_n, insufficient_data=True)
        places = np.arange(len(stable))
        with warnings.catch_warnings():
            # Where the exact sum does not converge scipy falls back to the asymptotic p-value, and says so.
            warnings.simplefilter("ignore", RuntimeWarning)
            pvalue = float(stats.ks_2samp(*(np.repeat(places, counts) for counts in whole), method="exact").pvalue)
    else:
        pvalue = float(np.clip(stats.kstwo.sf(statistic, round(effective_n)), 0.0, 1.0))
    return KSResult(n_stable, n_candidate, statistic, pvalue, effective_n)


@dataclass(frozen=True)
class DriftResult:
    """All three drift measures of one pair of histograms."""

    stable_counts: tuple[float, ...]
    candidate_counts: tuple[float, ...]
    psi: float
    jensen_shannon: float
    ks_statistic: float
    ks_pvalue: float
    insufficient_data: bool = False


def histogram_drift(stable_counts: npt.ArrayLike, candidate_counts: npt.ArrayLike) -> DriftResult:
    """PSI, Jensen–Shannon distance and KS of the candidate's histogram against the stable one's."""
    stable, candidate = paired_counts(stable_counts, candidate_counts)
    inputs = (tuple(float(c) for c in stable), tuple(float(c) for c in candidate))
    ks = ks_grouped(stable, candidate)
    if ks.insufficient_data:
        return DriftResult(
            *inputs, psi=0.0, jensen_shannon=0.0, ks_statistic=0.0, ks_pvalue=1.0, insufficient_data=True
        )
    return DriftResult(
        *inputs,
        psi=population_stability_index(stable, candidate),
        jensen_shannon=jensen_shannon_distance(stable, candidate),
        ks_statistic=ks.statistic,
        ks_pvalue=ks.pvalue,
    )
