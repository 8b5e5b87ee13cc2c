"""Pure statistics for rollout analysis: tests return frozen results, and `judge` turns them into verdicts."""

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
from controller.stats.judge import (
    ABVerdict,
    EffectResult,
    JudgePolicy,
    Verdict,
    judge_drift,
    judge_rank,
    judge_sequential,
)
from controller.stats.means import WelchTestResult, sequential_mean_test, welch_test
from controller.stats.msprt import (
    SequentialResult,
    carry_forward,
    confidence_sequence_half_width,
    mixture_variance,
    monotone_pvalue,
    normal_mixture_test,
)
from controller.stats.multiple import HolmResult, holm
from controller.stats.power import progress, samples_per_arm_for_means, samples_per_arm_for_proportions
from controller.stats.proportions import (
    DEFAULT_PROPORTION_TAU2,
    ProportionTestResult,
    sequential_proportion_test,
    two_proportion_test,
)
from controller.stats.ranks import (
    RankTestResult,
    hodges_lehmann_grouped,
    mann_whitney_grouped,
    representative_values,
)
from controller.stats.results import Alternative, ConfidenceInterval
from controller.stats.srm import DEFAULT_SRM_ALPHA, SRMResult, sample_ratio_mismatch

__all__ = [
    "DEFAULT_PROPORTION_TAU2",
    "DEFAULT_SRM_ALPHA",
    "PSI_EPSILON",
    "ABVerdict",
    "Alternative",
    "ConfidenceInterval",
    "DriftResult",
    "EffectResult",
    "HolmResult",
    "JudgePolicy",
    "KSResult",
    "ProportionTestResult",
    "RankTestResult",
    "SRMResult",
    "SequentialResult",
    "Verdict",
    "WelchTestResult",
    "carry_forward",
    "confidence_sequence_half_width",
    "counts_from_cumulative",
    "histogram_drift",
    "hodges_lehmann_grouped",
    "holm",
    "jensen_shannon_distance",
    "judge_drift",
    "judge_rank",
    "judge_sequential",
    "ks_grouped",
    "mann_whitney_grouped",
    "mixture_variance",
    "monotone_pvalue",
    "normal_mixture_test",
    "population_stability_index",
    "progress",
    "representative_values",
    "sample_ratio_mismatch",
    "samples_per_arm_for_means",
    "samples_per_arm_for_proportions",
    "sequential_mean_test",
    "sequential_proportion_test",
    "two_proportion_test",
    "welch_test",
]
