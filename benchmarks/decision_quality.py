"""Decision quality by simulation, through the operator's own tests: false decisions and time to detect.

Every simulated rollout goes look by look through `controller.analysis.step_tests`, the functions the
analysis runs at every `analysis.interval` (`guardrail_test`/`guardrail_look`, `design_at`/`ab_look`,
`SampleRatioTest`/`sample_ratio_look`, `slow_thresholds`), vectorised over the runs of a cell. Only
the counts are simulated (`numpy.random.default_rng(seed)`): requests per interval are Poisson, each
goes to the candidate with the route's weight, each errors (or converts, or is slow) independently.
One simplification: a cell's abTest design is taken from the true base rate, where the operator
takes it from a design sample that the test then leaves out; the design is fixed before the data
either way.

A/A cells (the candidate is the stable): any rollback, promotion or halt is false. The goal is at
most alpha in every cell (0.05 for the guardrails and the A/B verdicts, 0.001 for the sample-ratio
check), shown with its 95% Wilson interval. A test spends its alpha up to Ville's bound, so in a
cell where evidence arrives nearly continuously the true rate sits just under alpha, and some point
estimates land above it by chance; a goal counts as missed when a cell is above alpha beyond that
noise (its interval starts above alpha), and the report says how many point estimates were above.
Power cells: requests (both arms) until the decision, as a ratio to the one-sided fixed-horizon
sample at 80% power for the same split.

    python -m benchmarks.decision_quality            # a small matrix, about a minute
    python -m benchmarks.decision_quality --stress   # the full matrix: >= 2,000 runs a cell (A/A), 500 (power)
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from controller.analysis import compare_tests, step_tests
from controller.analysis.budget import AlphaBudget
from controller.stats import paired, samples_per_arm_for_proportions

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
NEVER = 0
ALPHA = 0.05
# The operator's own split of a step's alpha: one guardrail alone, and two sharing it.
STEP, FAMILY = AlphaBudget(ALPHA), AlphaBudget(ALPHA, guardrails=2)
INTERVAL_SECONDS = 10.0
# Coarse buckets (Prometheus-style), and ones spaced by 1.2x as the
# README recommends for relativeToStable 1.2.
COARSE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, math.inf)
FINE_BUCKETS = (*(round(0.005 * 1.2**i, 6) for i in range(33)), math.inf)


@dataclass(frozen=True)
class Settings:
    aa_runs: int = 500
    power_runs: int = 200
    srm_runs: int = 2000
    looks: int = 360  # a one-hour step at 10 s looks
    srm_looks: int = 1000
    late_onset_looks: int = 8640  # 24 h of quiet before the regression
    splits: tuple[float, ...] = (0.01, 0.05, 0.5, 0.95)
    base_rates: tuple[float, ...] = (0.001, 0.01, 0.1, 0.5)
    traffic: tuple[int, ...] = (1, 10, 100, 1000)
    seed: int = 20261123

    @staticmethod
    def stress() -> Settings:
        return Settings(aa_runs=2000, power_runs=500, srm_runs=10_000)


# --- traffic ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """Requests per interval (mean), the candidate's share, and whether volume and base rate follow a
    day's cycle (here compressed into the step: the hardest case for a test that pools over time)."""

    requests: float
    split: float
    diurnal: bool = False

    def volume(self, look: int, looks: int) -> float:
        if not self.diurnal:
            return self.requests
        return self.requests * (1.0 + 0.8 * math.sin(2 * math.pi * look / looks))

    def rate(self, base: float, look: int, looks: int) -> float:
        return base if not self.diurnal else min(base * (1.0 + 0.5 * math.sin(2 * math.pi * look / looks)), 1.0)


def arms(rng: np.random.Generator, traffic: Traffic, runs: int, look: int, looks: int) -> tuple[IntArray, IntArray]:
    """(stable, candidate) requests of one interval."""
    total = rng.poisson(traffic.volume(look, looks), runs)
    candidate = rng.binomial(total, traffic.split)
    return total - candidate, candidate


def constant(rate: float) -> Callable[[int], float]:
    return lambda _look: rate


def count_intervals(rng: np.random.Generator, traffic: Traffic, runs: int, looks: int, stable_rate: float,
                    candidate_rate: Callable[[int], float]) -> Iterator[step_tests.Interval]:
    for look in range(looks):
        stable_n, candidate_n = arms(rng, traffic, runs, look, looks)
        base = traffic.rate(stable_rate, look, looks)
        scale = base / stable_rate if stable_rate else 1.0
        yield step_tests.Interval(
            rng.binomial(stable_n, base).astype(np.float64), stable_n.astype(np.float64),
            rng.binomial(candidate_n, min(candidate_rate(look) * scale, 1.0)).astype(np.float64),
            candidate_n.astype(np.float64))


# --- the three tests, look by look ------------------------------------------------------------------


def first_breach(test: step_tests.GuardrailTest, intervals: Iterator[step_tests.Interval], runs: int) -> IntArray:
    state = step_tests.GuardrailState.start(runs)
    first = np.zeros(runs, dtype=np.int64)
    for look, interval in enumerate(intervals, 1):
        result = step_tests.guardrail_look(test, state, interval)
        state = result.state
        first = np.where((first == NEVER) & result.breached, look, first)
    return first


def first_verdicts(design: step_tests.ABDesign, intervals: Iterator[step_tests.Interval],
                   runs: int) -> tuple[IntArray, IntArray]:
    """(verdict code, look) of each run's first verdict."""
    state = step_tests.ABState.start(runs)
    verdict = np.zeros(runs, dtype=np.int64)
    when = np.zeros(runs, dtype=np.int64)
    for look, interval in enumerate(intervals, 1):
        result = step_tests.ab_look(design, state, interval)
        state = result.state
        new = (verdict == step_tests.NONE) & (result.verdict != step_tests.NONE)
        verdict = np.where(new, result.verdict, verdict)
        when = np.where(new, look, when)
    return verdict, when


# --- summaries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    events: int
    runs: int

    @property
    def rate(self) -> float:
        return self.events / self.runs

    @property
    def interval(self) -> tuple[float, float]:
        low, high = proportion_confint(self.events, self.runs, alpha=0.05, method="wilson")
        return min(float(low), self.rate), max(float(high), self.rate)

    def cell(self) -> str:
        low, high = self.interval
        return f"{100 * self.rate:5.2f}% [{100 * low:.2f}, {100 * high:.2f}]"


def aa_summary(rates: Sequence[Rate], alpha: float, verdicts: Verdicts, goal: str) -> str:
    """The goal is met when no cell is above alpha beyond simulation noise (its 95% interval starts
    at or under alpha); a test at its bound sits near alpha, so some point estimates land above it."""
    worst = max(rates, key=lambda rate: rate.rate)
    above = [rate for rate in rates if rate.rate > alpha]
    significant = [rate for rate in rates if rate.interval[0] > alpha]
    pooled = Rate(sum(rate.events for rate in rates), sum(rate.runs for rate in rates))
    verdicts[goal] = not significant
    return (f"   worst cell {worst.cell()}; {len(above)} of {len(rates)} cells above {alpha:.1%} by their point "
            f"estimate, {len(significant)} beyond noise; all cells pooled {pooled.cell()}")


def rate_of(first: IntArray) -> Rate:
    return Rate(int((first != NEVER).sum()), len(first))


def quantile_look(first: IntArray, share: float) -> float | None:
    """The look by which `share` of all runs decided; runs that never did count as later than any look."""
    needed = math.ceil(share * len(first) - 1e-9)
    decided = np.sort(first[first != NEVER])
    return float(decided[needed - 1]) if 0 < needed <= len(decided) else None


def one_sided_fixed_total(stable_rate: float, candidate_rate: float, split: float) -> float:
    """Requests (both arms) a one-sided fixed-horizon test needs at 80% power, at this split."""
    candidate = samples_per_arm_for_proportions(stable_rate, candidate_rate - stable_rate, alpha=ALPHA,
                                                power=0.8, two_sided=False, ratio=(1 - split) / split)
    return candidate / split


# --- sections ----------------------------------------------------------------------------------------

Lines = list[str]
Verdicts = dict[str, bool]


def guardrail_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    lines = ["", f"1. errorRate guardrail, A/A: false rollbacks over {settings.looks} looks, "
             f"{settings.aa_runs} runs a cell (goal <= {ALPHA:.0%})",
             f"   {'split':>6} {'base rate':>9} {'req/look':>8} {'diurnal':>7}  false rollback [95% CI]"]
    test = step_tests.guardrail_test(STEP, 1.0, INTERVAL_SECONDS, settings.looks * INTERVAL_SECONDS)
    rates = []
    for split in settings.splits:
        for base in settings.base_rates:
            for requests in settings.traffic:
                for diurnal in (False, True):
                    traffic = Traffic(requests, split, diurnal)
                    first = first_breach(test, count_intervals(rng, traffic, settings.aa_runs, settings.looks, base,
                                                               constant(base)), settings.aa_runs)
                    rates.append(rate_of(first))
                    lines.append(f"   {split:6.0%} {base:9.1%} {requests:8d} {diurnal!s:>7}  {rates[-1].cell()}")
    lines.append(aa_summary(rates, ALPHA, verdicts, "every errorRate A/A cell <= alpha"))
    return lines


def latency_slow_shares(rng: np.random.Generator, sigma: float, scale: float, buckets: Sequence[float],
                        stable_per_look: float, runs: int, tolerated: float, history: int | None = None,
                        median: float = 0.05) -> tuple[FloatArray, FloatArray]:
    """Per run: the stable's and the candidate's chance of a slow request, with the bounds the
    operator picks from ten minutes of the stable's histogram (readings.TAIL_LOOKBACK), or from
    `history` requests (a stable with a short past)."""
    edges = np.array(buckets[:-1])
    cdf = norm.cdf((np.log(edges) - math.log(median)) / sigma)
    probabilities = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    stable_share, candidate_share = np.zeros(runs), np.zeros(runs)
    past = history if history is not None else max(int(stable_per_look * 600 / INTERVAL_SECONDS), 1)
    window = rng.multinomial(past, probabilities, size=runs)
    for run in range(runs):
        cumulative = np.cumsum(window[run]).astype(float).tolist()
        try:
            bounds = step_tests.slow_thresholds(list(buckets), cumulative, 0.99, tolerated)
        except step_tests.Unresolvable:
            bounds = None  # refused: the operator tests nothing and says why (a miss in a power cell)
        if bounds is None:
            stable_share[run] = candidate_share[run] = 0.0
            continue
        stable_share[run] = norm.sf((math.log(bounds[0]) - math.log(median)) / sigma)
        candidate_share[run] = norm.sf((math.log(bounds[1]) - math.log(median * scale)) / sigma)
    return stable_share, candidate_share


def latency_intervals(rng: np.random.Generator, traffic: Traffic, runs: int, looks: int, stable_share: FloatArray,
                      candidate_share: FloatArray, onset: int = 0) -> Iterator[step_tests.Interval]:
    for look in range(looks):
        stable_n, candidate_n = arms(rng, traffic, runs, look, looks)
        share = candidate_share if look >= onset else stable_share
        yield step_tests.Interval(rng.binomial(stable_n, stable_share).astype(np.float64),
                                  stable_n.astype(np.float64),
                                  rng.binomial(candidate_n, share).astype(np.float64), candidate_n.astype(np.float64))


# The e2e model server's shape (60 ms median, sigma 0.1) with the shortest past the operator accepts.
SHORT_SIGMA, SHORT_MEDIAN, SHORT_HISTORY = 0.1, 0.06, round(step_tests.MIN_TAIL_REQUESTS / 0.01)


def latency_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    lines = ["", "2. latencyP99 guardrail (relativeToStable 1.2), A/A with lognormal tails (median 50 ms): "
             f"false rollbacks over {settings.looks} looks (goal <= {ALPHA:.0%})",
             f"   {'buckets':>7} {'sigma':>5} {'req/s':>5} {'split':>5}  false rollback [95% CI]"]
    test = step_tests.guardrail_test(STEP, 1.0, INTERVAL_SECONDS, settings.looks * INTERVAL_SECONDS)
    cells: list[tuple[str, Sequence[float], float, int, float, int | None, float]] = [
        (name, buckets, sigma, per_second, split, None, 0.05)
        for name, buckets in (("1.2x", FINE_BUCKETS), ("coarse", COARSE_BUCKETS))
        for sigma in (0.5, 1.0) for per_second in (5, 20) for split in (0.1, 0.5)]
    # A stable seconds old: its bounds from the fewest requests the operator accepts, a narrow tail.
    cells += [("coarse", COARSE_BUCKETS, SHORT_SIGMA, 20, split, SHORT_HISTORY, SHORT_MEDIAN) for split in (0.1, 0.5)]
    rates = []
    for name, buckets, sigma, per_second, split, history, center in cells:
        traffic = Traffic(per_second * INTERVAL_SECONDS, split)
        # A/A: the candidate's bound is the tolerated one, its distribution the stable's.
        stable_share, candidate_share = latency_slow_shares(
            rng, sigma, 1.0, buckets, traffic.requests * (1 - split), settings.aa_runs, 1.2, history, center)
        first = first_breach(test, latency_intervals(rng, traffic, settings.aa_runs, settings.looks,
                                                     stable_share, candidate_share), settings.aa_runs)
        rates.append(rate_of(first))
        past = f"  (bounds from {history} requests, median {center * 1000:.0f} ms)" if history else ""
        lines.append(f"   {name:>7} {sigma:5.1f} {per_second:5d} {split:5.0%}  {rates[-1].cell()}{past}")
    lines.append(aa_summary(rates, ALPHA, verdicts, "every latency A/A cell <= alpha"))
    return lines


def family_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    """errorRate and latencyP99 together, alpha / 2 each, on the same traffic."""
    runs, traffic = settings.aa_runs, Traffic(200, 0.1)
    errors = step_tests.guardrail_test(FAMILY, 1.0, INTERVAL_SECONDS, settings.looks * INTERVAL_SECONDS)
    latency = step_tests.guardrail_test(FAMILY, 1.0, INTERVAL_SECONDS, settings.looks * INTERVAL_SECONDS)
    stable_share, candidate_share = latency_slow_shares(rng, 1.0, 1.0, FINE_BUCKETS, 180, runs, 1.2)
    error_state, latency_state = step_tests.GuardrailState.start(runs), step_tests.GuardrailState.start(runs)
    rolled = np.zeros(runs, dtype=bool)
    for look in range(settings.looks):
        stable_n, candidate_n = arms(rng, traffic, runs, look, settings.looks)
        s, c = stable_n.astype(np.float64), candidate_n.astype(np.float64)
        error_look = step_tests.guardrail_look(errors, error_state, step_tests.Interval(
            rng.binomial(stable_n, 0.005).astype(np.float64), s, rng.binomial(candidate_n, 0.005).astype(np.float64),
            c))
        latency_look = step_tests.guardrail_look(latency, latency_state, step_tests.Interval(
            rng.binomial(stable_n, stable_share).astype(np.float64), s,
            rng.binomial(candidate_n, candidate_share).astype(np.float64), c))
        error_state, latency_state = error_look.state, latency_look.state
        rolled |= error_look.breached | latency_look.breached
    rate = Rate(int(rolled.sum()), runs)
    verdicts["A/A family (errorRate + latencyP99) <= alpha"] = rate.interval[0] <= ALPHA
    return ["", "3. Both guardrails of a step together (alpha / 2 each), A/A at 20 req/s, 10% canary, 0.5% errors, "
            f"sigma 1.0: false rollback {rate.cell()} (goal <= {ALPHA:.0%})"]


def ab_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    lines = ["", f"4. abTest (mde 10% relative), A/A: false CandidateBetter / CandidateWorse over {settings.looks} "
             f"looks (goal <= {ALPHA:.0%} together), and how often NoDifference was reached",
             f"   {'split':>6} {'base rate':>9} {'req/look':>8} {'diurnal':>7}  false better/worse [95% CI]"
             "   no difference"]
    rates = []
    for split in settings.splits:
        for base in settings.base_rates:
            design = step_tests.design_at(ALPHA, 0.1, "relative", True, base)
            for requests in settings.traffic:
                for diurnal in (False, True):
                    traffic = Traffic(requests, split, diurnal)
                    verdict, _ = first_verdicts(design, count_intervals(
                        rng, traffic, settings.aa_runs, settings.looks, base, constant(base)),
                        settings.aa_runs)
                    false = Rate(int(np.isin(verdict, [step_tests.BETTER, step_tests.WORSE]).sum()), settings.aa_runs)
                    same = float((verdict == step_tests.NO_DIFFERENCE).mean())
                    rates.append(false)
                    lines.append(f"   {split:6.0%} {base:9.1%} {requests:8d} {diurnal!s:>7}  {false.cell()}"
                                 f"   {same:6.1%}")
    lines.append(aa_summary(rates, ALPHA, verdicts, "every abTest A/A cell <= alpha"))
    return lines


def srm_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    lines = ["", f"5. Sample-ratio check, A/A: false halts over {settings.srm_looks} looks, {settings.srm_runs} runs "
             f"a cell (goal <= {step_tests.SRM_ALPHA:.1%}); the candidate errs 10x as often, which must not matter",
             f"   {'split':>6} {'req/look':>8}  false halt [95% CI]"]
    rates = []
    for split in settings.splits:
        for requests in settings.traffic:
            test = step_tests.SampleRatioTest(split)
            tests = step_tests.start_sample_ratio(settings.srm_runs)
            halted = np.zeros(settings.srm_runs, dtype=bool)
            traffic = Traffic(requests, split)
            for look in range(settings.srm_looks):
                stable_n, candidate_n = arms(rng, traffic, settings.srm_runs, look, settings.srm_looks)
                result = step_tests.sample_ratio_look(test, tests, stable_n.astype(np.float64),
                                                      candidate_n.astype(np.float64))
                tests, halted = result.tests, halted | result.mismatch
            rates.append(Rate(int(halted.sum()), settings.srm_runs))
            lines.append(f"   {split:6.0%} {requests:8d}  {rates[-1].cell()}")
    lines.append(aa_summary(rates, step_tests.SRM_ALPHA, verdicts, "every sample-ratio A/A cell <= 0.1%"))
    return lines


def error_speed(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    runs, traffic = settings.power_runs, Traffic(200, 0.1)
    fixed = one_sided_fixed_total(0.005, 0.010, 0.1)
    test = step_tests.guardrail_test(STEP, 1.0, INTERVAL_SECONDS, None)
    horizon = 3 * math.ceil(fixed / traffic.requests)
    start = first_breach(test, count_intervals(rng, traffic, runs, horizon, 0.005, lambda _: 0.010), runs)
    median, p80 = quantile_look(start, 0.5), quantile_look(start, 0.8)
    quiet = settings.late_onset_looks
    late = first_breach(test, count_intervals(rng, traffic, runs, quiet + 3 * horizon, 0.005,
                                              lambda look: 0.010 if look >= quiet else 0.005), runs)
    false_before = int(((late != NEVER) & (late <= quiet)).sum())
    delays = np.where(late > quiet, late - quiet, NEVER)
    late_median = quantile_look(delays, 0.5)
    ratio = None if median is None else median * traffic.requests / fixed
    late_ratio = None if median is None or late_median is None else late_median / median
    others = []
    for factor in (1.5, 4.0):
        fixed_other = one_sided_fixed_total(0.005, 0.005 * factor, 0.1)
        looks = 3 * math.ceil(fixed_other / traffic.requests)
        other = first_breach(test, count_intervals(rng, traffic, runs, looks, 0.005,
                                                   constant(0.005 * factor)), runs)
        found = quantile_look(other, 0.5)
        share = None if found is None else found * traffic.requests / fixed_other
        others.append(f"   {factor:g}x errors from the start: median {_requests(found, traffic)} "
                      f"({_times(share)} its fixed horizon)")
    verdicts["2x errors: median <= 0.8x the one-sided fixed horizon"] = ratio is not None and ratio <= 0.8
    verdicts["late onset: median delay <= 1.5x an onset at the start"] = late_ratio is not None and late_ratio <= 1.5
    return ["", "6. errorRate guardrail, 0.5% -> 1% errors at a 10% canary, 20 req/s "
            f"({runs} runs, 24 h open-ended design horizon)",
            f"   one-sided fixed horizon at 80% power: {fixed:,.0f} requests",
            f"   onset at the step's start: median {_requests(median, traffic)} ({_times(ratio)} the fixed horizon), "
            f"80th percentile {_requests(p80, traffic)} ({_times(None if p80 is None else p80 * 200 / fixed)})",
            f"   onset after {quiet * INTERVAL_SECONDS / 3600:.0f} h of quiet: median delay "
            f"{_requests(late_median, traffic)} ({_times(late_ratio)} the delay at the start); "
            f"{false_before} of {runs} runs rolled back falsely during the quiet period", *others]


def latency_speed(rng: np.random.Generator, settings: Settings) -> Lines:
    lines = ["", "7. latencyP99 guardrail (relativeToStable 1.2), +40% p99 (every request 1.4x slower), "
             f"{settings.power_runs} runs: time to rollback"]
    test = step_tests.guardrail_test(STEP, 1.0, INTERVAL_SECONDS, settings.looks * INTERVAL_SECONDS)
    shapes = (("1.2x", FINE_BUCKETS), ("coarse", COARSE_BUCKETS))
    cells: list[tuple[str, Sequence[float], float, int | None, float]] = [
        (name, buckets, sigma, None, 0.05) for name, buckets in shapes for sigma in (0.5, 1.0)]
    cells.append(("coarse", COARSE_BUCKETS, SHORT_SIGMA, SHORT_HISTORY, SHORT_MEDIAN))
    for name, buckets, sigma, history, center in cells:
        traffic = Traffic(200, 0.1)
        stable_share, candidate_share = latency_slow_shares(
            rng, sigma, 1.4, buckets, traffic.requests * 0.9, settings.power_runs, 1.2, history, center)
        first = first_breach(test, latency_intervals(rng, traffic, settings.power_runs, settings.looks,
                                                     stable_share, candidate_share), settings.power_runs)
        median, p80 = quantile_look(first, 0.5), quantile_look(first, 0.8)
        # The fixed horizon of the same count comparison, at the median run's slow shares.
        stable_slow, candidate_slow = float(np.median(stable_share)), float(np.median(candidate_share))
        fixed = (one_sided_fixed_total(stable_slow, candidate_slow, 0.1)
                 if 0 < stable_slow < candidate_slow < 1 else None)
        ratio = None if fixed is None or median is None else median * traffic.requests / fixed
        past = f", bounds from {history} requests" if history else ""
        lines.append(f"   {name:>5} buckets, sigma {sigma}{past}: caught in {rate_of(first).rate:.0%} of runs "
                     f"within {settings.looks * INTERVAL_SECONDS / 60:.0f} min; median {_seconds(median)} "
                     f"({_times(ratio)} the fixed horizon), 80th percentile {_seconds(p80)}; slow shares "
                     f"{stable_slow:.2%} stable, {candidate_slow:.2%} candidate")
    return lines


def ab_speed(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    """The mixture test the operator runs at a true effect of the MDE, against the two-sided fixed
    horizon and, at a 10% base, an O'Brien-Fleming group-sequential design with ten equally spaced
    analyses over maxDuration. From a 5% base on the test runs on the counts' exact conditional law."""
    runs, traffic = settings.power_runs, Traffic(1000, 0.5)
    lines = ["", f"8. abTest at a true effect of its MDE (50/50, {runs} runs a base): trials per arm to a verdict, "
             "against the two-sided fixed horizon at 80% power (goal at a 50% base: median <= 1.3x)"]
    for base, mde in ((0.10, 0.01), (0.30, 0.02), (0.50, 0.02)):
        design = step_tests.design_at(ALPHA, mde, "absolute", True, base)
        plan = step_tests.plan(design, 0.5)
        fixed = plan.fixed_horizon or 0
        horizon = 4 * math.ceil(fixed / (traffic.requests / 2))
        verdict, when = first_verdicts(design, count_intervals(rng, traffic, runs, horizon, base,
                                                               constant(base + mde)), runs)
        better = np.where(verdict == step_tests.BETTER, when, NEVER)
        median, p80 = quantile_look(better, 0.5), quantile_look(better, 0.8)
        ratios = [None if look is None or not fixed else look * traffic.requests / 2 / fixed for look in (median, p80)]
        # The effect is the MDE: a NoDifference verdict here is false.
        false_same = Rate(int((verdict == step_tests.NO_DIFFERENCE).sum()), runs)
        verdicts[f"NoDifference at a true effect of the MDE <= alpha ({base:.0%} base)"] = (
            false_same.interval[0] <= ALPHA)
        if base == 0.50:
            verdicts["abTest at a 50% base: median <= 1.3x the fixed horizon"] = (
                ratios[0] is not None and ratios[0] <= 1.3)
        law = "conditional law" if design.conditional else "binomial split"
        lines += [f"   {base:.0%} -> {base + mde:.0%} ({law}): fixed horizon {fixed:,}; CandidateBetter in "
                  f"{rate_of(better).rate:.0%}; median {_per_arm(median, traffic)} ({_times(ratios[0])}), "
                  f"80th percentile {_per_arm(p80, traffic)} ({_times(ratios[1])}); its plan said median "
                  f"{plan.sequential_median:,}, 80th percentile {plan.sequential_p80:,}; false NoDifference "
                  f"{false_same.cell()} (goal <= {ALPHA:.0%})"]
        if base == 0.10:
            group = group_sequential(rng, runs, base, base + mde, 2 * fixed, analyses=10)
            aa_group = group_sequential(rng, settings.aa_runs, base, base, 2 * fixed, analyses=10)
            lines.append(f"      O'Brien-Fleming, 10 looks to 2x the fixed horizon: CandidateBetter in {group[0]:.0%}; "
                         f"median {group[1]:,.0f}; A/A false verdicts {aa_group[2]:.2%} (needs the horizon's traffic "
                         "in advance, and its normal approximation is what failed at rare events)")
    return lines


def group_sequential(rng: np.random.Generator, runs: int, stable_rate: float, candidate_rate: float,
                     max_per_arm: float, analyses: int) -> tuple[float, float, float]:
    """(share better, median trials per arm to a verdict, share of any verdict) of a two-sided
    Lan-DeMets O'Brien-Fleming design, its bounds found by simulating the z-statistics' joint law."""
    fractions = np.arange(1, analyses + 1) / analyses
    spent = 2 * (1 - norm.cdf(norm.ppf(1 - ALPHA / 4) / np.sqrt(fractions)))
    paths = np.cumsum(rng.standard_normal((200_000, analyses)), axis=1)
    z = np.abs(paths / np.sqrt(np.arange(1, analyses + 1)))
    bounds, alive = [], np.ones(len(z), dtype=bool)
    for k in range(analyses):
        budget = (spent[k] - (spent[k - 1] if k else 0.0)) * len(z)
        candidates = np.sort(z[alive, k])[::-1]
        bound = float(candidates[int(budget)]) if int(budget) < len(candidates) else 0.0
        bounds.append(bound)
        alive &= z[:, k] < bound
    per_look = max_per_arm / analyses
    stable = np.zeros(runs)
    candidate = np.zeros(runs)
    decided = np.zeros(runs, dtype=bool)
    better = np.zeros(runs, dtype=bool)
    when = np.full(runs, np.inf)
    for k in range(analyses):
        stable += rng.binomial(int(per_look), stable_rate, runs)
        candidate += rng.binomial(int(per_look), candidate_rate, runs)
        n = per_look * (k + 1)
        pooled = (stable + candidate) / (2 * n)
        statistic = (candidate - stable) / n / np.sqrt(np.maximum(pooled * (1 - pooled) * 2 / n, 1e-12))
        now = ~decided & (np.abs(statistic) >= bounds[k])
        better |= now & (statistic > 0)
        when = np.where(now, n, when)
        decided |= now
    finite = np.sort(when[better])
    median = float(finite[len(when) // 2]) if len(finite) > len(when) // 2 else math.inf
    return float(better.mean()), median, float(decided.mean())


def _requests(look: float | None, traffic: Traffic) -> str:
    return "never" if look is None else f"{look * traffic.requests:,.0f} requests"


def _per_arm(look: float | None, traffic: Traffic) -> str:
    return "never" if look is None else f"{look * traffic.requests / 2:,.0f}"


def _seconds(look: float | None) -> str:
    return "never" if look is None else f"{look * INTERVAL_SECONDS:,.0f} s"


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


# --- the shadow step's comparisons (compare:) --------------------------------------------------------


@dataclass(frozen=True)
class Answers:
    """How the two models answer one request. A share `ambiguous` of requests gets a random answer
    from the stable, differing from another of its answers with probability `flip` (its noise rate is
    ambiguous x flip); an identical candidate answers those the same way; on a share `changed` of all
    requests the candidate answers otherwise, always (a retrained or a worse model)."""

    ambiguous: float = 0.0
    flip: float = 0.0
    changed: float = 0.0

    @property
    def noise(self) -> float:
        return self.ambiguous * self.flip

    @property
    def candidate(self) -> float:
        return self.changed + (1 - self.changed) * self.noise

    def cells(self, twice: float) -> FloatArray:
        """The chance of each of `paired.DISAGREEMENT_CELLS` for one compared request."""
        both = self.changed * self.noise + (1 - self.changed) * self.ambiguous * self.flip**2
        differs, noise = self.candidate, self.noise
        return np.array([(1 - twice) * (1 - differs), (1 - twice) * differs,
                         twice * (1 - differs - noise + both), twice * (noise - both),
                         twice * (differs - both), twice * both])


# A shadow step's compared requests per look: 20 a second, or the same mean in bursts (a look in
# twenty carries 20 times its share).
PAIRS_PER_LOOK = 200.0
NOISE_SHARE, MAX_EXCESS = 0.2, 0.02
# Power cells look ten times as often, so that the requests to a decision are read to 20.
FINE_LOOKS = 10


def pair_counts(rng: np.random.Generator, answers: Answers, runs: int, looks: int, bursty: bool,
                per_look: float = PAIRS_PER_LOOK) -> Iterator[FloatArray]:
    """Cumulative cell counts at each look."""
    probabilities = answers.cells(NOISE_SHARE)
    total = np.zeros((runs, probabilities.size))
    for _ in range(looks):
        if bursty:
            burst = rng.random(runs) < 0.05
            volume = rng.poisson(np.where(burst, per_look * 20 / 1.95, per_look / 1.95))
        else:
            volume = rng.poisson(per_look, runs)
        total = total + rng.multinomial(volume, probabilities)
        yield total


def first_decision(test: compare_tests.ComparisonTest, counts: Iterator[FloatArray], runs: int) -> IntArray:
    first = np.zeros(runs, dtype=np.int64)
    for look, cumulative in enumerate(counts, 1):
        first = np.where((first == NEVER) & test.look(cumulative).decided, look, first)
    return first


STABLES = (("deterministic", Answers()), ("noisy 5%", Answers(0.1, 0.5)), ("noisy 30%", Answers(0.6, 0.5)))


def paired_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    runs, looks = settings.aa_runs, settings.looks
    lines = ["", f"9. shadow comparisons, noisePercent {NOISE_SHARE:.0%}, maxExcess {MAX_EXCESS:.0%}, "
             f"{PAIRS_PER_LOOK / INTERVAL_SECONDS:.0f} compared requests/s over {looks} looks: false decisions "
             f"(goal <= {ALPHA:.0%})",
             f"   {'stable':>13} {'candidate':>28} {'traffic':>7}  {'test':>12}  false decision [95% CI]"]
    breach = compare_tests.disagreement(ALPHA, NOISE_SHARE, MAX_EXCESS)
    early = compare_tests.no_worse(ALPHA, NOISE_SHARE, MAX_EXCESS)
    rates = []
    for name, stable in STABLES:
        at_margin = replace(stable, changed=MAX_EXCESS / (1 - stable.noise))
        for candidate, answers, test, what in (
                ("identical", stable, breach, "hold"),
                ("retrained (1% of answers)", replace(stable, changed=0.01), breach, "hold"),
                ("at the margin (excess 2%)", at_margin, breach, "hold"),
                ("at the margin (excess 2%)", at_margin, early, "early pass")):
            for bursty in (False, True):
                first = first_decision(test, pair_counts(rng, answers, runs, looks, bursty), runs)
                rates.append(rate_of(first))
                lines.append(f"   {name:>13} {candidate:>28} {'bursty' if bursty else 'steady':>7}  {what:>12}  "
                             f"{rates[-1].cell()}")
    latency = compare_tests.paired_latency(ALPHA)
    for sigma in (0.2, 0.5):
        slower = float(norm.sf(math.log(1.2) / (sigma * math.sqrt(2))))
        first = first_decision(latency, slower_counts(rng, slower, runs, looks), runs)
        rates.append(rate_of(first))
        lines.append(f"   pairedLatency 1.2x, identical arms, service noise sigma {sigma}: false hold "
                     f"{rates[-1].cell()}")
    lines.append(aa_summary(rates, ALPHA, verdicts, "every shadow-comparison A/A cell <= alpha"))
    return lines


def slower_counts(rng: np.random.Generator, slower: float, runs: int, looks: int,
                  per_look: float = PAIRS_PER_LOOK) -> Iterator[FloatArray]:
    total = np.zeros((runs, 2))
    for _ in range(looks):
        volume = rng.poisson(per_look, runs)
        late = rng.binomial(volume, slower)
        total = total + np.stack([volume - late, late], axis=1)
        yield total


def paired_speed(rng: np.random.Generator, settings: Settings) -> Lines:
    runs, looks = settings.power_runs, settings.looks
    lines = ["", f"10. shadow comparisons, {runs} runs: compared requests to the decision (median, 80th percentile)"]
    breach = compare_tests.disagreement(ALPHA, NOISE_SHARE, MAX_EXCESS)
    alternatives = {"inverse-probability weighted alone": compare_tests.ComparisonTest(
        (paired.disagreement_excess(NOISE_SHARE),), MAX_EXCESS, ALPHA),
        "paired on the requests answered twice alone": compare_tests.ComparisonTest(
            (paired.PAIRED_EXCESS,), MAX_EXCESS, ALPHA)}
    early = compare_tests.no_worse(ALPHA, NOISE_SHARE, MAX_EXCESS)
    for name, stable in STABLES:
        worse = replace(stable, changed=(MAX_EXCESS + 0.05) / (1 - stable.noise))
        cells = []
        tests = [("hold, candidate 5 points above noise + maxExcess (the operator's test)", breach, worse),
                 *((f"   the same, {label}", test, worse) for label, test in alternatives.items()),
                 ("early pass (noWorse), identical candidate", early, stable)]
        for label, test, answers in tests:
            first = first_decision(test, pair_counts(rng, answers, runs, looks * FINE_LOOKS, False,
                                                     PAIRS_PER_LOOK / FINE_LOOKS), runs)
            median, p80 = quantile_look(first, 0.5), quantile_look(first, 0.8)
            cells.append(f"{label}: {_pairs(median)}, {_pairs(p80)} ({rate_of(first).rate:.0%} within "
                         f"{looks * INTERVAL_SECONDS / 60:.0f} min)")
        lines.append(f"   {name} stable (noise {stable.noise:.0%}):")
        lines += [f"      {cell}" for cell in cells]

    # +40% latency: a per-request size factor both arms share (lognormal, sigma 1.0: prompt length)
    # times each arm's own service noise (lognormal, sigma 0.2).
    size, service, scale = 1.0, 0.2, 1.4
    slower = float(norm.sf((math.log(1.2) - math.log(scale)) / (service * math.sqrt(2))))
    first = first_decision(compare_tests.paired_latency(ALPHA),
                           slower_counts(rng, slower, runs, looks * FINE_LOOKS, PAIRS_PER_LOOK / FINE_LOOKS), runs)
    paired_median, paired_p80 = quantile_look(first, 0.5), quantile_look(first, 0.8)
    traffic = Traffic(200, 0.1)
    guardrail = step_tests.guardrail_test(STEP, 1.0, INTERVAL_SECONDS, settings.looks * INTERVAL_SECONDS)
    stable_share, candidate_share = latency_slow_shares(
        rng, math.hypot(size, service), scale, FINE_BUCKETS, traffic.requests * 0.9, runs, 1.2)
    unpaired = first_breach(guardrail, latency_intervals(rng, traffic, runs, settings.looks, stable_share,
                                                    candidate_share), runs)
    unpaired_median, unpaired_p80 = quantile_look(unpaired, 0.5), quantile_look(unpaired, 0.8)
    candidate_requests = None if unpaired_median is None else unpaired_median * traffic.requests * traffic.split
    ratio = None if paired_median is None or candidate_requests is None else \
        paired_median * PAIRS_PER_LOOK / FINE_LOOKS / candidate_requests
    lines += [f"   +40% latency (size sigma {size}, service sigma {service}), relativeToStable 1.2:",
              f"      pairedLatency: {_pairs(paired_median)}, {_pairs(paired_p80)} ({rate_of(first).rate:.0%} caught)",
              f"      today's unpaired latencyP99 at a 10% canary, 1.2x buckets: median "
              f"{_requests(unpaired_median, traffic)} ({_candidate(unpaired_median, traffic)} of them the "
              f"candidate's), 80th percentile {_requests(unpaired_p80, traffic)} ({rate_of(unpaired).rate:.0%} caught)",
              f"      paired / unpaired, in requests the candidate answered, at the median: {_times(ratio)} "
              "(goal <= 0.3x)"]
    return lines


def _pairs(look: float | None) -> str:
    """Compared requests by a power cell's (fine) look."""
    return "never" if look is None else f"{look * PAIRS_PER_LOOK / FINE_LOOKS:,.0f}"


def _candidate(look: float | None, traffic: Traffic) -> str:
    return "never" if look is None else f"{look * traffic.requests * traffic.split:,.0f}"


# --- labels that arrive later: both models scored on the same requests (compare.labels) ---------------

# Labelled requests per second during a one-hour shadow step; labels may arrive long after it, and
# still count toward its record, so looks go on (10 s apart in the step, then further apart) for
# three days after it.
LABELS_PER_SECOND, STEP_SECONDS, LATE_SECONDS = 20.0, 3600.0, 3 * 86400.0
MAX_DROP = 0.01
LABEL_LOOKS = np.concatenate([np.arange(1, 361) * INTERVAL_SECONDS,
                              STEP_SECONDS + np.geomspace(60.0, LATE_SECONDS, 240)])


@dataclass(frozen=True)
class Labelled:
    """The chance of each of `paired.LABELLED_CELLS` for a labelled request, the median delay of each
    cell's labels (lognormal, sigma 1.5; 0: at once), and `labels.window`: 0 scores a request when its
    label arrives; otherwise each request is scored when its window closes, with its label if it came
    by then (left out if not)."""

    stable_only: float
    candidate_only: float
    both_wrong: float = 0.05
    delays: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    window: float = 0.0

    def cells(self) -> FloatArray:
        right = 1 - self.stable_only - self.candidate_only - self.both_wrong
        return np.array([right, self.stable_only, self.candidate_only, self.both_wrong])


def _delay_cdf(delay: float, since: FloatArray) -> FloatArray:
    if delay == 0:
        return np.asarray(since >= 0, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(np.where(since > 0, norm.cdf((np.log(np.maximum(since, 1e-9)) - math.log(delay)) / 1.5),
                                   0.0), dtype=np.float64)


def _scored(delay: float, window: float, looks: FloatArray, step: float) -> FloatArray:
    """Requests scored by each look, per labelled request per second of a step `step` seconds long."""
    if window > 0:  # each request at its window's close, if its label came by then
        return np.asarray(np.clip(looks - window, 0.0, step) * _delay_cdf(delay, np.array([window]))[0],
                          dtype=np.float64)
    if delay == 0:
        return np.minimum(looks, step)
    grid = np.linspace(0.0, step, 721)
    return np.asarray(np.trapezoid(_delay_cdf(delay, looks[:, None] - grid[None, :]), grid, axis=1),
                      dtype=np.float64)


def label_counts(rng: np.random.Generator, labelled: Labelled, runs: int, bursty: bool = False,
                 per_second: float = LABELS_PER_SECOND, looks: FloatArray = LABEL_LOOKS,
                 step: float = STEP_SECONDS) -> Iterator[FloatArray]:
    """Cumulative scored cell counts at each look. Requests are Poisson, so the requests scored
    between two looks are independent Poisson counts whatever the delays; bursty: a look in twenty
    carries 20 times its share of them, the same mean."""
    means = np.stack([per_second * p * _scored(d, labelled.window, looks, step)
                      for p, d in zip(labelled.cells(), labelled.delays, strict=True)], axis=1)
    total, before = np.zeros((runs, means.shape[1])), np.zeros(means.shape[1])
    for mean in means:
        scale = np.where(rng.random(runs) < 0.05, 20 / 1.95, 1 / 1.95) if bursty else np.ones(runs)
        total = total + rng.poisson(scale[:, None] * np.maximum(mean - before, 0.0)[None, :])
        before = mean
        yield total


def labels_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    runs = settings.aa_runs
    lines = ["", f"11. labels that arrive later (compare.labels), maxDrop {MAX_DROP:.0%}, "
             f"{LABELS_PER_SECOND:.0f} labelled requests/s for an hour, looks until 3 days after: false decisions "
             f"(goal <= {ALPHA:.0%})",
             f"   {'models':>36} {'label delays (median)':>36} {'window':>6} {'traffic':>7} {'test':>10}  "
             "false decision [95% CI]"]
    worse, early = compare_tests.accuracy_worse(ALPHA, MAX_DROP), compare_tests.accuracy_no_worse(ALPHA, MAX_DROP)
    rates = []
    equal = Labelled(0.03, 0.03)
    imbalanced = Labelled(0.003, 0.003, both_wrong=0.004)  # 1% positives, both models 99.3% accurate
    at_margin = Labelled(0.03 + MAX_DROP, 0.03)
    day, hour, second = 86400.0, 3600.0, 10.0
    # Delays that depend on who was right (one model's errors labelled later, as chargebacks are):
    # scored on arrival, early labels favour one model; scored at a window's close, they cannot.
    stable_late, candidate_late = (second, second, hour, second), (second, hour, second, second)
    cases = [
        ("equally accurate, different errors", equal, "at once", worse),
        ("equally accurate, different errors", replace(equal, delays=(second,) * 4), "10 s", worse),
        ("equally accurate, different errors", replace(equal, delays=(hour,) * 4), "1 h", worse),
        ("equally accurate, different errors", replace(equal, delays=(day,) * 4), "1 day", worse),
        ("equally accurate, different errors", replace(equal, delays=stable_late, window=day),
         "the stable's errors 1 h, others 10 s", worse),
        ("1% positives, equally accurate", imbalanced, "at once", worse),
        ("1% positives, equally accurate", replace(imbalanced, delays=(hour,) * 4), "1 h", worse),
        ("candidate maxDrop below (the margin)", at_margin, "at once", worse),
        ("candidate maxDrop below (the margin)", replace(at_margin, delays=(hour,) * 4), "1 h", worse),
        ("candidate maxDrop below (the margin)", at_margin, "at once", early),
        ("candidate maxDrop below (the margin)", replace(at_margin, delays=(day,) * 4), "1 day", early),
        ("candidate maxDrop below (the margin)", replace(at_margin, delays=candidate_late, window=day),
         "the candidate's errors 1 h, others 10 s", early),
    ]
    for models, labelled, delays, test in cases:
        for bursty in (False, True):
            first = first_decision(test, label_counts(rng, labelled, runs, bursty), runs)
            rates.append(rate_of(first))
            lines.append(f"   {models:>36} {delays:>36} {_window(labelled):>6} {'bursty' if bursty else 'steady':>7} "
                         f"{'hold' if test is worse else 'early pass':>10}  {rates[-1].cell()}")
    lines.append(aa_summary(rates, ALPHA, verdicts, "every labelled-pair A/A cell <= alpha"))
    for models, labelled, delays, test in (
            ("equally accurate, different errors", replace(equal, delays=stable_late),
             "the stable's errors 1 h, others 10 s", worse),
            ("candidate maxDrop below (the margin)", replace(at_margin, delays=candidate_late),
             "the candidate's errors 1 h, others 10 s", early)):
        first = first_decision(test, label_counts(rng, labelled, runs), runs)
        lines.append(f"   why labels.window: {models}, {delays}, scored on arrival: false "
                     f"{'hold' if test is worse else 'early pass'} {rate_of(first).cell()}")
    return lines


MAX_ERROR, MAX_INCREASE = 2.0, 0.05


def error_cells(rng: np.random.Generator, shift: float, sigma: float = 0.3, shared: float = 0.7,
                tail: bool = False, samples: int = 400_000) -> FloatArray:
    """The chance of each bucket of a labelled regression request's clipped error difference, through the
    comparator's own bucketing (`paired.error_cell`): each model's absolute error |N(0, sigma)| (a Student t
    with 3 degrees of freedom when `tail`), correlated `shared` on the same request; the candidate's is larger
    by `shift` on every request."""
    z = rng.standard_normal((samples, 2))
    if tail:
        z = rng.standard_t(3, (samples, 2))
    stable = np.abs(sigma * z[:, 0])
    candidate = np.abs(sigma * (shared * z[:, 0] + math.sqrt(1 - shared ** 2) * z[:, 1])) + shift
    stable, candidate = np.minimum(stable, MAX_ERROR), np.minimum(candidate, MAX_ERROR)
    buckets = [paired.error_cell(float(d), MAX_ERROR) for d in candidate - stable]
    return np.bincount(buckets, minlength=paired.ERROR_BUCKETS) / samples


def error_counts(rng: np.random.Generator, cells: FloatArray, runs: int, looks: int, per_look: float,
                 bursty: bool) -> Iterator[FloatArray]:
    """Cumulative bucket counts at each look; bursty: a look in twenty carries 20 times its share."""
    total = np.zeros((runs, cells.size))
    for _ in range(looks):
        scale = np.where(rng.random(runs) < 0.05, 20 / 1.95, 1 / 1.95) if bursty else np.ones(runs)
        total = total + rng.poisson(scale[:, None] * per_look * cells[None, :])
        yield total


def regression_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    """The regression's paired absolute-error test (labels.maxError) on its coarse buckets: equal models, and
    a candidate exactly maxIncrease worse (the margin) for the hold and the early pass."""
    runs, looks, per_look = settings.aa_runs, 360, 20 * INTERVAL_SECONDS
    worse = compare_tests.error_worse(ALPHA, MAX_ERROR, MAX_INCREASE)
    early = compare_tests.error_no_worse(ALPHA, MAX_ERROR, MAX_INCREASE)
    lines = ["", f"11b. labelled regressions (labels.maxError {MAX_ERROR:g}, maxIncrease {MAX_INCREASE:g}; "
             f"{paired.ERROR_BUCKETS} buckets of {2 * MAX_ERROR / paired.ERROR_BUCKETS:g}), 20 labelled requests/s, "
             f"{looks} looks: false decisions (goal <= {ALPHA:.0%})",
             f"   {'models':>44} {'errors':>16} {'traffic':>7} {'test':>10}  false decision [95% CI]"]
    rates = []
    for models, shift, tail, test in (
            ("equal errors, correlated 0.7", 0.0, False, worse),
            ("equal errors, correlated 0.7", 0.0, True, worse),
            ("the candidate's errors maxIncrease larger", MAX_INCREASE, False, worse),
            ("the candidate's errors maxIncrease larger", MAX_INCREASE, True, worse),
            ("the candidate's errors maxIncrease larger", MAX_INCREASE, False, early),
            ("the candidate's errors maxIncrease larger", MAX_INCREASE, True, early)):
        cells = error_cells(rng, shift, tail=tail)
        for bursty in (False, True):
            first = first_decision(test, error_counts(rng, cells, runs, looks, per_look, bursty), runs)
            rates.append(rate_of(first))
            lines.append(f"   {models:>44} {'t(3), clipped' if tail else 'half-normal':>16} "
                         f"{'bursty' if bursty else 'steady':>7} {'hold' if test is worse else 'early pass':>10}  "
                         f"{rates[-1].cell()}")
    lines.append(aa_summary(rates, ALPHA, verdicts, "every labelled-regression A/A cell <= alpha"))
    # Power: the buckets' width (maxError / 20) is the price of coarse counts: each bucket is scored by the
    # edge that cannot overstate the evidence, about half a width (0.05 here) against the candidate's gain.
    power_runs, power_looks, per = settings.power_runs, 2000, 10.0
    for shift in (0.1, 0.2):
        first = first_decision(worse, error_counts(rng, error_cells(rng, shift), power_runs, power_looks, per,
                                                   False), power_runs)
        median, p80 = quantile_look(first, 0.5), quantile_look(first, 0.8)
        lines.append(f"   power, {power_runs} runs: the candidate's errors {shift:g} larger (half-normal, sigma 0.3): "
                     f"labelled requests to the hold {_labelled(median, per)} median, {_labelled(p80, per)} "
                     f"80th percentile ({rate_of(first).rate:.0%} within {power_looks * per:,.0f})")
    return lines


def _window(labelled: Labelled) -> str:
    return "none" if not labelled.window else f"{labelled.window / 3600:.0f} h"


def labels_speed(rng: np.random.Generator, settings: Settings) -> Lines:
    """A 2-point accuracy drop at 90% base accuracy: labelled pairs to the hold, paired (both models
    on the same requests, their errors mostly shared) against two independent arms of the same size
    (each pair a stable request and another, candidate request: the same test, on independent cells)."""
    runs = settings.power_runs
    per_look = 10.0  # labelled requests a look: the pairs to a decision are read to 10
    looks = np.arange(1, 20_001, dtype=np.float64)
    lines = ["", f"12. labels, power, {runs} runs: labelled pairs to a hold for a candidate 2 points less accurate "
             f"(90% -> 88%), maxDrop {MAX_DROP:.0%} (median, 80th percentile)"]
    worse = compare_tests.accuracy_worse(ALPHA, MAX_DROP)
    found: dict[str, float | None] = {}
    for label, labelled in (
            ("paired, the candidate errs where the stable does but on 1% more + 1% of its own (4% discordant)",
             Labelled(0.03, 0.01, both_wrong=0.09)),
            ("paired, less shared errors (10% discordant)", Labelled(0.06, 0.04, both_wrong=0.06)),
            ("unpaired: two independent arms (21% discordant)", Labelled(0.9 * 0.12, 0.1 * 0.88, both_wrong=0.012))):
        first = first_decision(worse, label_counts(rng, labelled, runs, per_second=per_look, looks=looks,
                                                   step=math.inf), runs)
        median, p80 = quantile_look(first, 0.5), quantile_look(first, 0.8)
        found[label] = None if median is None else median * per_look
        lines.append(f"   {label}: {_labelled(median, per_look)}, {_labelled(p80, per_look)} "
                     f"({rate_of(first).rate:.0%} within {looks.size * per_look:,.0f})")
    paired_n, unpaired_n = next(iter(found.values())), list(found.values())[-1]
    ratio = None if paired_n is None or unpaired_n is None else paired_n / unpaired_n
    lines.append(f"   paired (4% discordant) / unpaired, at the median: {_times(ratio)} (goal <= 0.4x)")
    return lines


def _labelled(look: float | None, per_look: float) -> str:
    return "never" if look is None else f"{look * per_look:,.0f}"


# --- a judge model's preferences (compare.judge) ------------------------------------------------------

JUDGED_PER_LOOK, JUDGE_MARGIN, HUMAN_LABELS = 20.0, 0.05, 30


def judge_cells(stable_share: float, ties: float = 0.2, position_bias: float = 0.55, randomised: bool = True,
                indifferent: float = 0.3, leaning: float = 0.0) -> FloatArray:
    """The chance of each of `paired.JUDGED_CELLS` for one judged pair. Shown in a fair order, the judge
    prefers the stable on `stable_share` of the pairs it decides; on a share `indifferent` of them it
    cannot tell and picks the answer shown first (A) with `position_bias`. Shown in a random order that
    bias cancels; with the candidate always first, it moves those pairs its way. `leaning`: of the pairs
    the judge would give the candidate, it gives this share to the stable (a judge biased to one model)."""
    decided = 1 - ties
    stable = stable_share + (1 - stable_share) * leaning
    if not randomised:
        stable -= indifferent * (position_bias - 0.5)
    return np.array([decided * (1 - stable), decided * stable, ties])


def judged_counts(rng: np.random.Generator, cells: FloatArray, runs: int, looks: int) -> Iterator[FloatArray]:
    total = np.zeros((runs, cells.size))
    for _ in range(looks):
        total = total + rng.multinomial(rng.poisson(JUDGED_PER_LOOK, runs), cells)
        yield total


def judge_aa(rng: np.random.Generator, settings: Settings, verdicts: Verdicts) -> Lines:
    runs, looks = settings.aa_runs, settings.looks
    lines = ["", f"13. a judge model's preferences (compare.judge), margin {JUDGE_MARGIN:.0%}, "
             f"{JUDGED_PER_LOOK / INTERVAL_SECONDS:.0f} judged pairs/s over {looks} looks: false decisions "
             f"(goal <= {ALPHA:.0%})",
             f"   {'case':>78}  false decision [95% CI]"]
    worse = compare_tests.judged_worse(ALPHA, JUDGE_MARGIN)
    early = compare_tests.judged_no_worse(ALPHA, JUDGE_MARGIN)
    margin = 0.5 + JUDGE_MARGIN
    rates = []
    for case, cells, test in (
            ("equal models, judge position bias 55/45, order randomised: hold", judge_cells(0.5), worse),
            ("equal models, position bias 60/40, 40% ties, order randomised: hold", judge_cells(0.5, 0.4, 0.6),
             worse),
            ("the stable preferred on 1/2 + margin of decided pairs: hold", judge_cells(margin), worse),
            ("the same: early pass (noWorse)", judge_cells(margin), early)):
        first = first_decision(test, judged_counts(rng, cells, runs, looks), runs)
        rates.append(rate_of(first))
        lines.append(f"   {case:>78}  {rates[-1].cell()}")
    # Humans prefer the stable on exactly 1/2 + margin; the judge leans to the stable on 15% of the pairs
    # humans give the candidate. Its raw verdict breaches; corrected by 30 human-judged pairs, it may not.
    # (At most 500 runs: the corrected interval inverts two tests over a grid at every look.)
    runs = min(runs, 500)
    leaning = 0.15
    judge = judge_cells(margin, ties=0.0, leaning=leaning)
    calibration = np.zeros((runs, len(paired.CALIBRATION_CELLS)))
    humans = rng.binomial(1, margin, size=(runs, HUMAN_LABELS))  # 1: the human prefers the stable
    leans = rng.random((runs, HUMAN_LABELS)) < leaning
    judges = np.where(humans == 1, 1, np.where(leans, 1, 0))
    for j, judged_name in ((0, "candidate"), (1, "stable")):
        for h, human_name in ((0, "candidate"), (1, "stable")):
            calibration[:, paired.CALIBRATION_CELLS.index(f"{judged_name}/{human_name}")] = \
                np.sum((judges == j) & (humans == h), axis=1)
    corrected = np.zeros(runs, dtype=np.int64)
    raw = np.zeros(runs, dtype=np.int64)
    for look, cumulative in enumerate(judged_counts(rng, judge, runs, looks), 1):
        low, _ = paired.prediction_powered(cumulative, calibration, ALPHA)
        corrected = np.where((corrected == NEVER) & (low > margin), look, corrected)
        raw = np.where((raw == NEVER) & worse.look(cumulative).decided, look, raw)
    rates.append(rate_of(corrected))
    case = "judge leaning 15% to the stable, humans at 1/2 + margin, corrected by 30 human labels: hold"
    lines.append(f"   {case:>78}  {rates[-1].cell()}")
    lines.append(aa_summary(rates, ALPHA, verdicts, "every judge A/A cell <= alpha"))
    unrandomised = first_decision(early, judged_counts(rng, judge_cells(margin, randomised=False), runs, looks), runs)
    lines.append(f"   why randomise the order: the stable preferred on 1/2 + margin, the candidate always shown first "
                 f"(position bias 55/45): false early pass {rate_of(unrandomised).cell()}")
    lines.append(f"   why calibrate: the leaning judge's raw verdict in the same cell: false hold "
                 f"{rate_of(raw).cell()}")
    return lines


SECTIONS = ("guardrail", "latency", "family", "ab", "srm", "speed", "latency-speed", "ab-speed", "paired",
            "paired-speed", "labels", "labels-speed", "judge")


def report(settings: Settings, sections: Sequence[str] = SECTIONS) -> tuple[str, Verdicts]:
    rng = np.random.default_rng(settings.seed)
    verdicts: Verdicts = {}
    started = time.monotonic()
    lines: Lines = []
    runners: dict[str, Callable[[], Lines]] = {
        "guardrail": lambda: guardrail_aa(rng, settings, verdicts),
        "latency": lambda: latency_aa(rng, settings, verdicts),
        "family": lambda: family_aa(rng, settings, verdicts),
        "ab": lambda: ab_aa(rng, settings, verdicts),
        "srm": lambda: srm_aa(rng, settings, verdicts),
        "speed": lambda: error_speed(rng, settings, verdicts),
        "latency-speed": lambda: latency_speed(rng, settings),
        "ab-speed": lambda: ab_speed(rng, settings, verdicts),
        "paired": lambda: paired_aa(rng, settings, verdicts),
        "paired-speed": lambda: paired_speed(rng, settings),
        "labels": lambda: labels_aa(rng, settings, verdicts) + regression_aa(rng, settings, verdicts),
        "labels-speed": lambda: labels_speed(rng, settings),
        "judge": lambda: judge_aa(rng, settings, verdicts),
    }
    for section in sections:
        lines += runners[section]()
    head = [
        "Decision quality of the operator's sequential tests (controller.analysis.step_tests)",
        f"runtime: {time.monotonic() - started:.0f} s on {platform.machine()} Python {platform.python_version()}; "
        f"seed {settings.seed}; alpha {ALPHA}; looks every {INTERVAL_SECONDS:.0f} s",
        "",
        "Goals:",
        *(f"   [{'met' if ok else 'MISSED'}] {goal}" for goal, ok in verdicts.items()),
    ]
    return "\n".join(head + lines), verdicts


def settings_for(stress: bool, seed: int) -> Settings:
    return replace(Settings.stress() if stress else Settings(), seed=seed)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stress", action="store_true", help="the full matrix: 2,000 runs a cell (A/A), 500 (power)")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    args = parser.parse_args(argv)
    text, _ = report(settings_for(args.stress, args.seed), args.only or SECTIONS)
    print(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
