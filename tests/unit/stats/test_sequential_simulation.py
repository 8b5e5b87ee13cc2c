"""Error rates of the always-valid tests under repeated looks, by simulation with fixed seeds.

Counts are drawn vectorized; each look then goes through the public test functions, as the engine's would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from controller.stats import (
    SequentialResult,
    carry_forward,
    mixture_variance,
    sequential_mean_test,
    sequential_proportion_test,
)

ALPHA = 0.05
LOOKS = 20
PER_LOOK = 250  # new samples per arm between looks: 5,000 per arm at the last look


@dataclass(frozen=True)
class BinaryExperiments:
    """Cumulative successes per run (rows) and look (columns), and the trials per arm at each look."""

    stable: npt.NDArray[np.int64]
    candidate: npt.NDArray[np.int64]
    trials: npt.NDArray[np.int64]


def _binary_experiments(seed: int, runs: int, stable_rate: float, candidate_rate: float) -> BinaryExperiments:
    rng = np.random.default_rng(seed)
    stable = np.cumsum(rng.binomial(PER_LOOK, stable_rate, size=(runs, LOOKS)), axis=1)
    candidate = np.cumsum(rng.binomial(PER_LOOK, candidate_rate, size=(runs, LOOKS)), axis=1)
    return BinaryExperiments(stable, candidate, PER_LOOK * np.arange(1, LOOKS + 1))


def _run_msprt(experiments: BinaryExperiments, run: int, tau2: float) -> list[SequentialResult]:
    """The carried-forward result after each look of one run."""
    folded: list[SequentialResult] = []
    previous: SequentialResult | None = None
    for look, trials in enumerate(experiments.trials):
        current = sequential_proportion_test(
            stable_successes=float(experiments.stable[run, look]),
            stable_trials=float(trials),
            candidate_successes=float(experiments.candidate[run, look]),
            candidate_trials=float(trials),
            tau2=tau2,
            alpha=ALPHA,
        )
        previous = carry_forward(previous, current)
        folded.append(previous)
    return folded


def _msprt_rejects(experiments: BinaryExperiments, tau2: float) -> npt.NDArray[np.bool_]:
    runs = experiments.stable.shape[0]
    return np.array([_run_msprt(experiments, run, tau2)[-1].pvalue <= ALPHA for run in range(runs)])


def _naive_z_test_pvalues(experiments: BinaryExperiments) -> npt.NDArray[np.float64]:
    """The textbook pooled two-proportion z-test at every look, as if each were the only one."""
    trials = experiments.trials.astype(np.float64)
    pooled = (experiments.stable + experiments.candidate) / (2 * trials)
    standard_error = np.sqrt(pooled * (1 - pooled) * 2 / trials)
    difference = (experiments.candidate - experiments.stable) / trials
    z = np.divide(difference, standard_error, out=np.zeros_like(difference), where=standard_error > 0)
    return np.asarray(2 * norm.sf(np.abs(z)), dtype=np.float64)


def test_aa_peeking_at_the_msprt_keeps_false_positives_at_alpha_unlike_the_naive_z_test() -> None:
    experiments = _binary_experiments(seed=20240611, runs=400, stable_rate=0.05, candidate_rate=0.05)
    msprt_rate = float(_msprt_rejects(experiments, mixture_variance(0.01)).mean())
    naive = _naive_z_test_pvalues(experiments)
    naive_peeking_rate = float((naive <= ALPHA).any(axis=1).mean())
    naive_once_rate = float((naive[:, -1] <= ALPHA).mean())
    # Measured with this seed: mSPRT 0.0100, z-test at every look 0.2700, z-test once 0.0700.
    assert msprt_rate <= 0.08
    assert naive_peeking_rate > 0.15
    assert 0.02 <= naive_once_rate <= 0.09, "the z-test looked at once must hold its level"


def test_a_wider_mixture_still_holds_the_level() -> None:
    experiments = _binary_experiments(seed=7, runs=400, stable_rate=0.05, candidate_rate=0.05)
    # Measured with this seed: 0.0225.
    assert float(_msprt_rejects(experiments, mixture_variance(0.03)).mean()) <= 0.08


def test_a_real_difference_is_found_and_early() -> None:
    experiments = _binary_experiments(seed=11, runs=200, stable_rate=0.05, candidate_rate=0.08)
    first_rejection: list[int] = []
    for run in range(200):
        pvalues = [result.pvalue for result in _run_msprt(experiments, run, mixture_variance(0.03))]
        rejected = [look for look, pvalue in enumerate(pvalues) if pvalue <= ALPHA]
        first_rejection.append(rejected[0] + 1 if rejected else LOOKS + 1)
    looks = np.array(first_rejection)
    power = float((looks <= LOOKS).mean())
    # Measured with this seed: power 1.0, median stop at look 5 (1,250 per arm of the 5,000 available).
    assert power >= 0.9
    assert float(np.median(looks)) <= 10


def test_the_carried_forward_confidence_sequence_covers_the_true_difference_at_every_look() -> None:
    experiments = _binary_experiments(seed=3, runs=400, stable_rate=0.05, candidate_rate=0.065)
    missed = 0
    for run in range(400):
        results = _run_msprt(experiments, run, mixture_variance(0.01))
        missed += any(not result.ci_low <= 0.015 <= result.ci_high for result in results)
    # Measured with this seed: 0.0075.
    assert missed / 400 <= 0.08


@dataclass(frozen=True)
class MeanExperiments:
    """Cumulative sample means and variances per arm (first axis), run and look, and the count per arm."""

    means: npt.NDArray[np.float64]
    variances: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]


def _lognormal_experiments(seed: int, runs: int, per_look: int) -> MeanExperiments:
    rng = np.random.default_rng(seed)
    # Skewed like latencies: mean 1.13, standard deviation 0.60.
    draws = rng.lognormal(mean=0.0, sigma=0.5, size=(2, runs, LOOKS, per_look))
    counts = per_look * np.arange(1, LOOKS + 1)
    means = np.cumsum(draws.sum(axis=3), axis=2) / counts
    squares = np.cumsum((draws**2).sum(axis=3), axis=2)
    return MeanExperiments(means, (squares - counts * means**2) / (counts - 1), counts)


def _mean_msprt_rejection_rate(experiments: MeanExperiments, shift: float, tau2: float) -> float:
    runs = int(experiments.means.shape[1])
    rejections = 0
    for run in range(runs):
        previous: SequentialResult | None = None
        for look, count in enumerate(experiments.counts):
            current = sequential_mean_test(
                stable_mean=float(experiments.means[0, run, look]),
                stable_variance=float(experiments.variances[0, run, look]),
                stable_count=float(count),
                candidate_mean=float(experiments.means[1, run, look]) + shift,
                candidate_variance=float(experiments.variances[1, run, look]),
                candidate_count=float(count),
                tau2=tau2,
                alpha=ALPHA,
            )
            previous = carry_forward(previous, current)
        assert previous is not None
        rejections += previous.pvalue <= ALPHA
    return rejections / runs


def test_aa_peeking_at_the_mean_msprt_keeps_false_positives_at_alpha() -> None:
    experiments = _lognormal_experiments(seed=99, runs=300, per_look=100)
    msprt_rate = _mean_msprt_rejection_rate(experiments, shift=0.0, tau2=mixture_variance(0.05))
    means, variances, counts = experiments.means, experiments.variances, experiments.counts
    z = (means[1] - means[0]) / np.sqrt((variances[0] + variances[1]) / counts)
    naive_peeking_rate = float((2 * norm.sf(np.abs(z)) <= ALPHA).any(axis=1).mean())
    # Measured with this seed: mSPRT 0.0067, z-test at every look 0.2233.
    assert msprt_rate <= 0.08
    assert naive_peeking_rate > 0.15


def test_a_real_shift_in_the_mean_is_found() -> None:
    experiments = _lognormal_experiments(seed=5, runs=300, per_look=100)
    # A shift of 0.1 (a sixth of a standard deviation) needs about 570 per arm at fixed horizon.
    power = _mean_msprt_rejection_rate(experiments, shift=0.1, tau2=mixture_variance(0.05))
    # Measured with this seed: 0.99.
    assert power >= 0.8
