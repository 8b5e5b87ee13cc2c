"""Decision quality of rollback rules, by simulation: false rollbacks when nothing is wrong, time to catch a regression.

Each simulated rollout splits traffic 50/50 between stable and candidate and is analysed once per interval, as
the operator's A/B step is. The errors of each arm in each interval are binomial draws
(`numpy.random.default_rng(seed)`), and three rollback rules judge the same draws:

* ours: the A/B step's judge, as `controller.analysis.evaluate` runs it. At every interval the cumulative
  counts since the step began go into `controller.stats.sequential_proportion_test` (an mSPRT with a normal
  mixture, tau2 = `mixture_variance(mde)`), the look is folded into the running test with `carry_forward`, and
  `judge_sequential` (higher error rates worse) rolls back on CANDIDATE_WORSE: the always-valid p-value is at
  most alpha and the carried-forward confidence sequence lies entirely above 0. Every look of every run goes
  through these library functions, not a re-implementation: at about 10 µs a look, the 1.6 million looks of
  the default settings take some 20 s.
* naive: the textbook one-sided pooled two-proportion z-test (candidate worse) on the cumulative counts,
  repeated at every interval as if each look were the only one; rollback at p ≤ alpha. It is vectorized, and
  checked on a subsample against `controller.stats.two_proportion_test` to 1e-9.
* Flagger-style: the candidate's error rate over that interval's requests alone against a fixed maximum
  (Flagger's `thresholdRange.max`, failing when the value is above it). Every failing interval adds a failed
  check; like Flagger's `status.failedChecks` the count is never reset by passing checks, and the rollout
  rolls back once it reaches `analysis.threshold` (Flagger's default, 5).

Scenario 1 (A/A) gives both arms the baseline error rate: any rollback is false. Scenario 2 doubles the
candidate's error rate and measures how many requests each rule needs to roll back, next to the fixed-horizon
sample size at 80% power from `controller.stats.samples_per_arm_for_proportions`. The mixture is symmetric,
so the judge's p-value is two-sided and the fixed-horizon figure is the two-sided one too. Last, the A/A
scenario is repeated at other traffic levels: a fixed threshold's false rollbacks depend on the requests per
interval, an always-valid test's should not.

Run from the repository root (it prints a plain-text report; the defaults take about 30 s on one core):

    python -m benchmarks.decision_quality [--runs 10000] [--seed 20240611]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from controller.stats import (
    ABVerdict,
    JudgePolicy,
    SequentialResult,
    carry_forward,
    judge_sequential,
    mixture_variance,
    samples_per_arm_for_proportions,
    sequential_proportion_test,
    two_proportion_test,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

VERIFY_TOLERANCE = 1e-9
INTERVAL_ALPHA = 0.05  # the Wilson intervals of the report are 95% intervals, whatever the tests' alpha
NEVER = 0  # the first-rollback interval of a run that did not roll back within its horizon


@dataclass(frozen=True)
class Parameters:
    """Everything the simulation depends on; the report prints all of it."""

    runs: int = 10_000
    seed: int = 20240611
    requests_per_interval: int = 400  # per arm: 50/50 split, e.g. 800 requests a minute with 1-minute intervals
    baseline_error_rate: float = 0.005
    regressed_error_rate: float = 0.010
    aa_intervals: int = 30
    regression_intervals: int = 100  # long enough for nearly every run of every rule to roll back
    alpha: float = 0.05
    minimum_detectable_effect: float = 0.005  # absolute: the judge's mixture looks for a 0.5-point rise
    power: float = 0.8
    flagger_max_error_rate: float = 0.01  # 2x the baseline, an absolute maximum as Flagger users write it
    flagger_threshold: int = 5  # Flagger's default analysis.threshold
    verify_runs: int = 50  # runs per scenario on which the vectorized naive test is checked against the library
    sensitivity_requests: tuple[int, ...] = (50, 100, 200, 400, 1600)  # A/A again at these requests per interval

    def __post_init__(self) -> None:
        counts = (self.runs, self.aa_intervals, self.regression_intervals, self.requests_per_interval,
                  *self.sensitivity_requests)
        if min(counts) < 1 or self.verify_runs < 0:
            raise ValueError("runs, intervals and requests per interval must be at least 1, verify_runs non-negative")

    @property
    def tau2(self) -> float:
        return mixture_variance(self.minimum_detectable_effect)

    @property
    def policy(self) -> JudgePolicy:
        # Error rates: higher is worse, so CANDIDATE_WORSE means the sequence lies above 0.
        return JudgePolicy(alpha=self.alpha, minimum_detectable_effect=self.minimum_detectable_effect,
                           higher_is_better=False)


@dataclass(frozen=True)
class Rollouts:
    """Errors per run (rows) and analysis interval (columns) in each arm, each arm getting the same requests."""

    stable_errors: IntArray
    candidate_errors: IntArray
    requests_per_interval: int

    @property
    def runs(self) -> int:
        return int(self.stable_errors.shape[0])

    @property
    def intervals(self) -> int:
        return int(self.stable_errors.shape[1])

    def cumulative_requests(self) -> IntArray:
        """Requests per arm since the step began, at the end of each interval."""
        return self.requests_per_interval * np.arange(1, self.intervals + 1, dtype=np.int64)

    def head(self, runs: int) -> Rollouts:
        return replace(self, stable_errors=self.stable_errors[:runs], candidate_errors=self.candidate_errors[:runs])


def simulate_rollouts(
    rng: np.random.Generator, runs: int, intervals: int, requests: int, stable_rate: float, candidate_rate: float
) -> Rollouts:
    stable = rng.binomial(requests, stable_rate, size=(runs, intervals)).astype(np.int64)
    candidate = rng.binomial(requests, candidate_rate, size=(runs, intervals)).astype(np.int64)
    return Rollouts(stable, candidate, requests)


# --- the three rules: each returns the first interval (1-based) at which a run rolls back, NEVER if none ----


def first_true(rollbacks: BoolArray) -> IntArray:
    """1-based column of the first True in each row, NEVER for rows without one."""
    return np.where(rollbacks.any(axis=1), rollbacks.argmax(axis=1) + 1, NEVER).astype(np.int64)


def first_sequential_rollback(
    stable_errors: Sequence[int], candidate_errors: Sequence[int], trials: Sequence[int], params: Parameters
) -> int:
    """One run through the operator's A/B judge, look by look, stopping at the rollback as the operator does."""
    running: SequentialResult | None = None
    for look, (stable, candidate, n) in enumerate(zip(stable_errors, candidate_errors, trials, strict=True), 1):
        current = sequential_proportion_test(
            stable_successes=stable, stable_trials=n, candidate_successes=candidate, candidate_trials=n,
            tau2=params.tau2, alpha=params.alpha,
        )
        running = carry_forward(running, current)
        if judge_sequential(running, params.policy) is ABVerdict.CANDIDATE_WORSE:
            return look
    return NEVER


def sequential_first_rollbacks(rollouts: Rollouts, params: Parameters) -> IntArray:
    # Python lists: indexing numpy scalars one by one would cost more than the tests themselves.
    trials: list[int] = rollouts.cumulative_requests().tolist()
    stable: list[list[int]] = np.cumsum(rollouts.stable_errors, axis=1).tolist()
    candidate: list[list[int]] = np.cumsum(rollouts.candidate_errors, axis=1).tolist()
    return np.array(
        [first_sequential_rollback(s, c, trials, params) for s, c in zip(stable, candidate, strict=True)],
        dtype=np.int64,
    )


def naive_pvalues(rollouts: Rollouts) -> FloatArray:
    """One-sided (candidate worse) pooled two-proportion z-test on the cumulative counts of every look."""
    trials = rollouts.cumulative_requests().astype(np.float64)
    stable = np.cumsum(rollouts.stable_errors, axis=1)
    candidate = np.cumsum(rollouts.candidate_errors, axis=1)
    pooled = (stable + candidate) / (2.0 * trials)
    standard_error = np.sqrt(pooled * (1.0 - pooled) * (2.0 / trials))
    difference = (candidate - stable) / trials
    defined = standard_error > 0
    z = np.divide(difference, standard_error, out=np.zeros_like(difference), where=defined)
    # Both arms without errors: no variance and no evidence, p = 1 as in two_proportion_test.
    return np.where(defined, np.asarray(norm.sf(z), dtype=np.float64), 1.0)


def naive_first_rollbacks(rollouts: Rollouts, alpha: float) -> IntArray:
    return first_true(naive_pvalues(rollouts) <= alpha)


def flagger_first_rollbacks(rollouts: Rollouts, max_error_rate: float, threshold: int) -> IntArray:
    failed_checks = rollouts.candidate_errors / rollouts.requests_per_interval > max_error_rate
    return first_true(np.cumsum(failed_checks, axis=1) >= threshold)


def naive_max_deviation_from_library(rollouts: Rollouts, alpha: float) -> float:
    """Largest |p vectorized − p of `two_proportion_test`| over every look of these runs."""
    vectorized = naive_pvalues(rollouts)
    trials = rollouts.cumulative_requests()
    stable = np.cumsum(rollouts.stable_errors, axis=1)
    candidate = np.cumsum(rollouts.candidate_errors, axis=1)
    deviation = 0.0
    for row in range(rollouts.runs):
        for look in range(rollouts.intervals):
            library = two_proportion_test(
                stable_successes=float(stable[row, look]), stable_trials=float(trials[look]),
                candidate_successes=float(candidate[row, look]), candidate_trials=float(trials[look]),
                method="score", alternative="greater", alpha=alpha,
            )
            deviation = max(deviation, abs(library.pvalue - float(vectorized[row, look])))
    return deviation


# --- summaries ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackRate:
    rollbacks: int
    runs: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.rollbacks / self.runs


def rollback_rate(first_rollbacks: IntArray) -> RollbackRate:
    rollbacks, runs = int((first_rollbacks != NEVER).sum()), len(first_rollbacks)
    low, high = proportion_confint(rollbacks, runs, alpha=INTERVAL_ALPHA, method="wilson")
    # At an observed 0 or 1 the Wilson bound can land an ulp inside it (0.9999999999999998 for 1).
    rate = rollbacks / runs
    return RollbackRate(rollbacks, runs, min(float(low), rate), max(float(high), rate))


def interval_by_which_share_rolled_back(first_rollbacks: IntArray, share: float) -> int | None:
    """Smallest interval by whose end at least `share` of all runs had rolled back; None beyond the horizon.

    Runs that never rolled back count as later than the horizon, so the median is not flattered by dropping them.
    """
    needed = math.ceil(share * len(first_rollbacks) - 1e-9)  # 0.9 * runs can land a hair above a whole number
    rolled = np.sort(first_rollbacks[first_rollbacks != NEVER])
    return int(rolled[needed - 1]) if 0 < needed <= len(rolled) else None


@dataclass(frozen=True)
class Detection:
    rate: RollbackRate
    median_interval: int | None
    p90_interval: int | None


def detection(first_rollbacks: IntArray) -> Detection:
    return Detection(
        rollback_rate(first_rollbacks),
        interval_by_which_share_rolled_back(first_rollbacks, 0.5),
        interval_by_which_share_rolled_back(first_rollbacks, 0.9),
    )


@dataclass(frozen=True)
class AARates:
    """False rollback rates of the three rules on one set of A/A rollouts."""

    sequential: RollbackRate
    naive: RollbackRate
    flagger: RollbackRate
    library_looks: int  # looks our judge evaluated through controller.stats


def looks_evaluated(first_rollbacks: IntArray, intervals: int) -> int:
    return int(np.where(first_rollbacks == NEVER, intervals, first_rollbacks).sum())


def aa_rates(rollouts: Rollouts, params: Parameters) -> AARates:
    sequential = sequential_first_rollbacks(rollouts, params)
    return AARates(
        sequential=rollback_rate(sequential),
        naive=rollback_rate(naive_first_rollbacks(rollouts, params.alpha)),
        flagger=rollback_rate(
            flagger_first_rollbacks(rollouts, params.flagger_max_error_rate, params.flagger_threshold)
        ),
        library_looks=looks_evaluated(sequential, rollouts.intervals),
    )


@dataclass(frozen=True)
class Regression:
    sequential: Detection
    naive: Detection
    flagger: Detection
    fixed_horizon_two_sided: int
    fixed_horizon_one_sided: int
    sequential_by_fixed_horizon: float  # share of runs our judge rolled back by the first look past the fixed n
    library_looks: int


def fixed_horizon_interval(samples_per_arm: int, requests_per_interval: int) -> int:
    """The first look at which each arm has at least the fixed-horizon sample size."""
    return math.ceil(samples_per_arm / requests_per_interval)


def regression_results(rollouts: Rollouts, params: Parameters) -> Regression:
    sequential = sequential_first_rollbacks(rollouts, params)
    effect = params.regressed_error_rate - params.baseline_error_rate
    # Two-sided, as the judge's symmetric mixture is (and as the operator's samplesNeeded is computed).
    two_sided, one_sided = (
        samples_per_arm_for_proportions(params.baseline_error_rate, effect, alpha=params.alpha, power=params.power,
                                        two_sided=sides)
        for sides in (True, False)
    )
    by_fixed = fixed_horizon_interval(two_sided, params.requests_per_interval)
    return Regression(
        sequential=detection(sequential),
        naive=detection(naive_first_rollbacks(rollouts, params.alpha)),
        flagger=detection(flagger_first_rollbacks(rollouts, params.flagger_max_error_rate, params.flagger_threshold)),
        fixed_horizon_two_sided=two_sided,
        fixed_horizon_one_sided=one_sided,
        sequential_by_fixed_horizon=float(((sequential != NEVER) & (sequential <= by_fixed)).mean()),
        library_looks=looks_evaluated(sequential, rollouts.intervals),
    )


@dataclass(frozen=True)
class Results:
    aa: AARates
    aa_naive_last_look: RollbackRate  # the naive test used once, at the end, as a fixed-horizon test is meant to be
    regression: Regression
    aa_by_traffic: dict[int, AARates]  # requests per arm per interval -> rates
    library_looks: int  # looks our judge evaluated through controller.stats, all scenarios together
    naive_checked_looks: int
    naive_max_deviation: float


def checked_naive_deviation(rollouts: Sequence[Rollouts], runs: int, alpha: float) -> float:
    """Stop the benchmark unless the vectorized naive test is the library's, on the first `runs` of each set."""
    deviation = max(naive_max_deviation_from_library(rollout.head(runs), alpha) for rollout in rollouts)
    if deviation > VERIFY_TOLERANCE:
        raise RuntimeError(f"vectorized naive z-test departs from two_proportion_test by {deviation:.3g}")
    return deviation


def aa_rates_by_traffic(rng: np.random.Generator, params: Parameters, main: AARates) -> dict[int, AARates]:
    """Scenario 1 at each sensitivity level; the main traffic level reuses the main scenario's rollouts."""
    by_traffic: dict[int, AARates] = {}
    for level in sorted(params.sensitivity_requests):
        if level == params.requests_per_interval:
            by_traffic[level] = main
            continue
        rollouts = simulate_rollouts(rng, params.runs, params.aa_intervals, level,
                                     params.baseline_error_rate, params.baseline_error_rate)
        by_traffic[level] = aa_rates(rollouts, replace(params, requests_per_interval=level))
    return by_traffic


def run(params: Parameters) -> Results:
    # Independent streams per scenario: the regression's draws do not depend on how the A/A ones were taken.
    aa_rng, regression_rng, traffic_rng = np.random.default_rng(params.seed).spawn(3)
    baseline = params.baseline_error_rate
    aa = simulate_rollouts(aa_rng, params.runs, params.aa_intervals, params.requests_per_interval, baseline, baseline)
    regression = simulate_rollouts(regression_rng, params.runs, params.regression_intervals,
                                   params.requests_per_interval, baseline, params.regressed_error_rate)
    verify = min(params.verify_runs, params.runs)
    deviation = checked_naive_deviation([aa, regression], verify, params.alpha)

    main = aa_rates(aa, params)
    by_traffic = aa_rates_by_traffic(traffic_rng, params, main)
    regressed = regression_results(regression, params)
    extra_looks = sum(rates.library_looks for rates in by_traffic.values() if rates is not main)
    return Results(
        aa=main,
        aa_naive_last_look=rollback_rate(first_true(naive_pvalues(aa)[:, -1:] <= params.alpha)),
        regression=regressed,
        aa_by_traffic=by_traffic,
        library_looks=main.library_looks + regressed.library_looks + extra_looks,
        naive_checked_looks=verify * (aa.intervals + regression.intervals),
        naive_max_deviation=deviation,
    )


# --- report ---------------------------------------------------------------------------------------------------


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def wilson_cell(rate: RollbackRate) -> str:
    return f"{percent(rate.rate):>7} [{percent(rate.low)}, {percent(rate.high)}]"


def rate_row(label: str, rate: RollbackRate) -> str:
    return f"  {label:<52} {rate.rollbacks:>9,}  {wilson_cell(rate)}"


def requests_cell(interval: int | None, params: Parameters) -> str:
    if interval is None:
        return f"beyond {params.regression_intervals * params.requests_per_interval:,} per arm"
    per_arm = interval * params.requests_per_interval
    return f"{per_arm:,} / {2 * per_arm:,} (interval {interval})"


def detection_row(label: str, found: Detection, params: Parameters) -> str:
    return (f"  {label:<24} {percent(found.rate.rate):>11}   {requests_cell(found.median_interval, params):<34}"
            f" {requests_cell(found.p90_interval, params)}")


def parameter_lines(params: Parameters, runtime: float) -> list[str]:
    per_arm = params.requests_per_interval
    return [
        "Decision quality of rollback rules: benchmarks/decision_quality.py",
        f"runtime: {runtime:.1f} s  (Python {platform.python_version()}, numpy {np.__version__})",
        "",
        "Parameters",
        f"  runs per scenario        {params.runs:,} (--runs); seed {params.seed} (--seed)",
        f"  traffic                  50/50 split, {per_arm:,} requests per arm per analysis interval",
        f"  stable error rate        {percent(params.baseline_error_rate)}",
        f"  scenario 1 (A/A)         candidate {percent(params.baseline_error_rate)}, {params.aa_intervals} intervals "
        f"({params.aa_intervals * per_arm:,} requests per arm); a rollback at any interval is false",
        f"  scenario 2 (regression)  candidate {percent(params.regressed_error_rate)}, up to "
        f"{params.regression_intervals} intervals ({params.regression_intervals * per_arm:,} requests per arm)",
        f"  traffic sensitivity      scenario 1 again at {', '.join(map(str, params.sensitivity_requests))} "
        "requests per arm per interval",
        f"  alpha                    {params.alpha}",
        f"  ours                     mSPRT on cumulative counts, mde {params.minimum_detectable_effect} absolute, "
        f"tau2 = mde^2 = {params.tau2:.3g},",
        "                           looks folded with carry_forward; rollback when judge_sequential says",
        f"                           candidate_worse (p <= {params.alpha} and the confidence sequence entirely "
        "above 0)",
        "  naive                    one-sided pooled two-proportion z-test on cumulative counts at every interval,",
        f"                           rollback at p <= {params.alpha}",
        "  Flagger-style            failed check when the candidate's error rate over the interval alone is "
        f"> {percent(params.flagger_max_error_rate)}",
        f"                           ({params.flagger_max_error_rate / params.baseline_error_rate:g}x baseline); "
        f"failed checks accumulate, never reset; rollback at {params.flagger_threshold}",
        "                           (Flagger's default analysis.threshold)",
        f"  fixed-horizon n          power {params.power}, alpha {params.alpha}, on Cohen's h "
        "(samples_per_arm_for_proportions)",
    ]


def check_lines(results: Results) -> list[str]:
    return [
        "Checks",
        "  ours: every look went through controller.stats (sequential_proportion_test -> carry_forward ->",
        f"        judge_sequential): {results.library_looks:,} looks",
        "  naive: vectorized z-test vs two_proportion_test(method='score', alternative='greater') on "
        f"{results.naive_checked_looks:,} looks:",
        f"        max |dp| = {results.naive_max_deviation:.1e} (tolerance {VERIFY_TOLERANCE:g})",
    ]


def aa_lines(results: Results, params: Parameters) -> list[str]:
    return [
        f"1. A/A: false rollback rate, {params.runs:,} rollouts x {params.aa_intervals} intervals "
        f"(target: at most alpha = {params.alpha})",
        f"  {'rule':<52} {'rollbacks':>9}  {'rate':>7} 95% Wilson interval",
        rate_row("ours: sequential judge, every interval", results.aa.sequential),
        rate_row("naive z-test, every interval", results.aa.naive),
        rate_row("Flagger-style failed-check counter", results.aa.flagger),
        rate_row("reference: naive z-test at the last interval only", results.aa_naive_last_look),
    ]


def regression_lines(results: Results, params: Parameters) -> list[str]:
    regression = results.regression
    fixed = regression.fixed_horizon_two_sided
    by_fixed = fixed_horizon_interval(fixed, params.requests_per_interval)
    found = regression.sequential
    lines = [
        f"2. Regression {percent(params.baseline_error_rate)} -> {percent(params.regressed_error_rate)}: "
        f"requests until rollback, {params.runs:,} rollouts, horizon {params.regression_intervals} intervals",
        f"  fixed-horizon sample size, two-sided (as the judge's symmetric mixture): {fixed:,} per arm "
        f"({2 * fixed:,} total)",
        f"  (one-sided it would be {regression.fixed_horizon_one_sided:,} per arm)",
        f"  {'rule':<24} {'rolled back':>11}   {'median, per arm / total':<34} 90th percentile, per arm / total",
        detection_row("ours: sequential judge", found, params),
        detection_row("naive z-test", regression.naive, params),
        detection_row("Flagger-style counter", regression.flagger, params),
    ]
    if found.median_interval is not None:
        ratio = found.median_interval * params.requests_per_interval / fixed
        lines.append(f"  ours: median / fixed-horizon n = {ratio:.2f}")
    lines.append(f"  ours: rolled back by interval {by_fixed} ({by_fixed * params.requests_per_interval:,} per arm, "
                 f"the first look past the fixed-horizon n): {percent(regression.sequential_by_fixed_horizon)}")
    lines.append(f"        (the fixed-horizon test rejects at that n with probability {percent(params.power)})")
    return lines


def traffic_lines(results: Results, params: Parameters) -> list[str]:
    lines = [
        f"3. A/A false rollback rate by traffic, {params.runs:,} rollouts x {params.aa_intervals} intervals each",
        f"  {'requests/arm/interval':>21}   {'ours':<25} {'naive z-test':<25} Flagger-style",
    ]
    for level, rates in results.aa_by_traffic.items():
        lines.append(f"  {level:>21,}   {wilson_cell(rates.sequential):<25} {wilson_cell(rates.naive):<25} "
                     f"{wilson_cell(rates.flagger)}")
    return lines


NOTES = [
    "Notes",
    "  - Median and 90th percentile: the first interval by whose end that share of ALL runs had rolled back;",
    "    runs that never rolled back count as beyond the horizon. Total requests = both arms (50/50 split).",
    "  - No rule ends a run early by promoting (ours on no_difference, Flagger after its iterations): each",
    "    sees the whole horizon, which can only add false rollbacks.",
    "  - Flagger does not advance on a failed check and rolls back on the tick after the threshold; here all",
    "    rules see the same intervals and Flagger's rollback is credited at its 5th failed interval.",
    "  - Flagger's threshold is absolute: its error rates depend on the traffic per interval and on how far",
    "    the baseline sits below the threshold; it has no error guarantee to hold.",
]


def format_report(params: Parameters, results: Results, runtime: float) -> str:
    sections = [parameter_lines(params, runtime), check_lines(results), aa_lines(results, params),
                regression_lines(results, params), traffic_lines(results, params), NOTES]
    return "\n\n".join("\n".join(section) for section in sections)


def parse_arguments(argv: Sequence[str] | None) -> Parameters:
    defaults = Parameters()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=defaults.runs, help="simulated rollouts per scenario")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of numpy.random.default_rng")
    arguments = parser.parse_args(argv)
    runs: int = arguments.runs
    seed: int = arguments.seed
    if runs < 1:
        parser.error("--runs must be at least 1")
    return replace(defaults, runs=runs, seed=seed)


def main(argv: Sequence[str] | None = None) -> None:
    params = parse_arguments(argv)
    started = time.perf_counter()
    results = run(params)
    print(format_report(params, results, time.perf_counter() - started))


if __name__ == "__main__":
    main()
