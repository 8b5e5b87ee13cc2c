"""Pure statistics for rollout analysis: the anytime-valid split test, fixed-horizon sample sizes, drift."""

from controller.stats.drift import (
    PSI_EPSILON,
    DriftResult,
    KSResult,
    histogram_drift,
    jensen_shannon_distance,
    ks_grouped,
    population_stability_index,
)
from controller.stats.histograms import counts_from_cumulative
from controller.stats.power import samples_per_arm_for_proportions

__all__ = [
    "PSI_EPSILON",
    "DriftResult",
    "KSResult",
    "counts_from_cumulative",
    "histogram_drift",
    "jensen_shannon_distance",
    "ks_grouped",
    "population_stability_index",
    "samples_per_arm_for_proportions",
]
