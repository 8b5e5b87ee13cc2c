"""The sequential tests of a step, one look at a time: the policy between the counts and a verdict.

Pure and vectorised over a leading axis of runs. An analysis run passes one run; the
decision-quality benchmark passes thousands of simulated rollouts through these same functions,
so the error rates it prints are the operator's. The statistics are `controller.stats.split_test`
(Lindon & Malek's anytime-valid count test with a Shiryaev-Roberts e-detector); this module picks
their nulls, mixtures and error budgets:

- a statistical guardrail (errorRate, latency) tests "the candidate's events (errors, slow requests)
  outrun the stable's by more than the tolerated ratio" one-sided, with its share of analysis.alpha
  as `budget.AlphaBudget` spends it;
- an abTest runs two one-sided tests of "no difference" (alpha / 2 each) for CandidateBetter and
  CandidateWorse, and two of "the difference reaches the MDE" (alpha each, as in a TOST) whose joint
  rejection is NoDifference;
- the sample-ratio check tests the candidate's share of requests against the route weight, two-sided.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy.stats import norm

from controller.analysis.budget import AlphaBudget
from controller.stats import split_test
from controller.stats.power import samples_per_arm_for_proportions

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Guardrails look for regressions around a doubling of errors (or slow requests): the mixture sits
# there, wide enough to catch a 1.5x and a 10x change too. Narrower is faster at 2x and slower
# elsewhere (benchmarks/decision_quality.py shows both).
GUARDRAIL_EFFECT = math.log(2.0)
GUARDRAIL_SPREAD = 0.2
# The change detector restarts this often: fewer restarts lower its threshold, and a late regression
# is masked by at most this much quiet traffic.
RESTART_SECONDS = 300.0
# The design horizon of a step without a duration; past it the detector's budget halves per doubling.
OPEN_HORIZON_SECONDS = 24 * 3600.0

# The slow-request bound is placed once the stable's histogram holds this many requests of the tail
# (200 requests for a p99): over analysis.window, else over readings.TAIL_LOOKBACK.
MIN_TAIL_REQUESTS = 2.0
# An interval counts at most the candidate events a regression at the mixture's centre exceeds this
# rarely (`censor`). benchmarks/read_path.py chose it: 0.01 let pod episodes through (5% false
# rollbacks), 0.05 slowed the 2x catch by half; 0.02 keeps both.
CENSOR_TAIL = 0.02
# And no interval multiplies a guardrail's evidence by more than e^2: a test needs two intervals to
# cross, so a burst in one long interval does not roll back alone, and a 10x fault still does in two.
# benchmarks/read_path.py chose it: without it one candidate pod's 20 s slow episode rolled back
# 6.5-8.5% of A/A canaries at S = 1 and 60 s; 1.0 fixed that too, but made every fault wait four intervals.
INTERVAL_LOG_CAP = 2.0

SRM_ALPHA = 0.001
# A mismatch the check looks for: the candidate's share off by about 10% of itself.
SRM_SPREAD = 0.1

# Past this a count is not traffic (and floats stop counting whole requests at 2**53).
MAX_COUNT = 1e15

# The A/B design waits for this many trials (both arms) to fix its baseline; they are not tested.
DESIGN_TRIALS = 100
DESIGN_LOOKS = 6
POWER = 0.8


@dataclass(frozen=True)
class Interval:
    """One interval's counts of one comparison, per run: events (errors, slow requests,
    successes) and trials (requests, ok requests) of each arm."""

    stable_events: FloatArray
    stable_trials: FloatArray
    candidate_events: FloatArray
    candidate_trials: FloatArray

    @staticmethod
    def of(stable_events: float, stable_trials: float, candidate_events: float, candidate_trials: float) -> Interval:
        return Interval(*(np.array([float(v)]) for v in (stable_events, stable_trials, candidate_events,
                                                          candidate_trials)))

    @property
    def share(self) -> FloatArray:
        """The candidate's share of the trials: where an event lands when the arms do not differ."""
        total = self.stable_trials + self.candidate_trials
        return np.asarray(np.divide(self.candidate_trials, total, out=np.zeros_like(total), where=total > 0),
                          dtype=np.float64)

    def complement(self) -> Interval:
        """Count the other outcome: failures instead of successes."""
        return Interval(self.stable_trials - self.stable_events, self.stable_trials,
                        self.candidate_trials - self.candidate_events, self.candidate_trials)


@dataclass(frozen=True)
class Problem:
    """Why counts cannot be tested. A reset is expected (a pod restarted): the interval is left out
    and nothing is wrong with the measurement; anything else is an error to report."""

    message: str
    reset: bool = False


def count_problem(values: Sequence[float]) -> Problem | None:
    """Counts from user queries and counter differences: anything can arrive."""
    if not all(math.isfinite(v) for v in values):
        return Problem("a count is not a number")
    if min(values) < 0:
        return Problem("a counter went backwards (a reset): this interval is skipped", reset=True)
    if max(values) > MAX_COUNT:
        return Problem(f"a count of {max(values):.3g} in one interval is beyond any real traffic")
    return None


def problem(interval: Interval) -> Problem | None:
    """Why one run's interval cannot be tested, or None."""
    values = [float(v[0]) for v in (interval.stable_events, interval.stable_trials, interval.candidate_events,
                                    interval.candidate_trials)]
    found = count_problem(values)
    if found is None and (values[0] > values[1] or values[2] > values[3]):
        found = Problem(f"more events than trials ({values[0]:g}/{values[1]:g} stable, {values[2]:g}/{values[3]:g} "
                        "candidate): check the metric's queries")
    return found


# --- guardrails -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardrailTest:
    """One statistical guardrail's design: its share of the step's alpha, the tolerated log rate ratio,
    the detector's pace."""

    budget: AlphaBudget
    tolerated_log_ratio: float = 0.0
    restart_every: int = 30
    horizon_restarts: int = 288

    @property
    def mixture(self) -> split_test.Mixture:
        return split_test.mixture(self.tolerated_log_ratio, 1, GUARDRAIL_SPREAD, GUARDRAIL_EFFECT)

    @property
    def cumulative_threshold(self) -> float:
        return split_test.cumulative_log_threshold(self.budget.cumulative)

    def detector_threshold(self, restarts: int) -> float:
        return split_test.detector_log_threshold(self.budget.detector, restarts, self.horizon_restarts)


def guardrail_test(budget: AlphaBudget, tolerated_ratio: float, interval_seconds: float,
                   step_seconds: float | None) -> GuardrailTest:
    restart_every = max(1, round(RESTART_SECONDS / interval_seconds))
    horizon_looks = (step_seconds or OPEN_HORIZON_SECONDS) / interval_seconds
    return GuardrailTest(budget, math.log(tolerated_ratio), restart_every,
                         max(1, math.ceil(horizon_looks / restart_every)))


@dataclass(frozen=True)
class GuardrailState:
    cumulative: FloatArray
    detector: FloatArray
    looks: int
    restarts: int
    # The stable's events and trials so far: its rate sets how many candidate events an interval can
    # count (`censor`).
    stable_events: FloatArray
    stable_trials: FloatArray

    @staticmethod
    def start(runs: int) -> GuardrailState:
        cumulative, detector = split_test.start(runs)
        return GuardrailState(cumulative, detector, 0, 0, np.zeros(runs), np.zeros(runs))


@dataclass(frozen=True)
class GuardrailLook:
    state: GuardrailState
    breached: BoolArray
    evidence: FloatArray
    detector: FloatArray
    detector_threshold: float


def poisson_quantile(q: float, mean: FloatArray) -> FloatArray:
    """The least k with P(Poisson(mean) <= k) >= q, for 0 < q < 1: `scipy.stats.poisson.ppf`'s own
    method (the incomplete gamma's inverse in k, then one step down if that already reaches q),
    without its generic argument handling (54 µs a call, against 12 µs: every look of every guardrail)."""
    mean = np.asarray(mean, dtype=float)
    safe = np.maximum(mean, 1e-300)  # A mean of 0 is a count of 0; pdtrik wants a positive mean.
    above = np.ceil(special.pdtrik(q, safe))
    below = np.maximum(above - 1, 0)
    quantile = np.where(special.pdtr(below, safe) >= q, below, above)
    return np.where(mean > 0, quantile, 0.0)


def censor(test: GuardrailTest, state: GuardrailState, interval: Interval) -> Interval:
    """The interval with the candidate's events capped at what a regression the test looks for would
    rarely exceed: Huber's censored probability ratio test ("A robust version of the probability
    ratio test", Ann. Math. Statist. 36, 1965), with the pod interval as the unit.

    Errors and slow requests cluster: a pod that hiccups errs in a burst, and one candidate pod's
    20-second episode can hold more errors than an hour of its steady traffic. Counted one by one,
    such a burst reads as overwhelming evidence; capped, it weighs as one bad interval. The cap is
    the CENSOR_TAIL upper quantile of the Poisson count a candidate at the mixture's centre (twice the
    tolerated ratio of the stable's rate) would show in the interval, and at least one event, so a
    steady regression is seldom capped at all. Capping only lowers the candidate's count (and the
    events the interval holds with it), and every alternative tilts towards the candidate, so each
    interval's likelihood ratio can only fall: the test stays valid whatever the cap.
    """
    # Half an event over half a trial: before the stable has counted anything, nothing is capped.
    rate = (state.stable_events + interval.stable_events + 0.5) / (state.stable_trials + interval.stable_trials + 0.5)
    expected = np.minimum(rate, 1.0) * interval.candidate_trials * math.exp(test.tolerated_log_ratio + GUARDRAIL_EFFECT)
    cap = np.maximum(1.0, poisson_quantile(1.0 - CENSOR_TAIL, expected))
    return Interval(interval.stable_events, interval.stable_trials, np.minimum(interval.candidate_events, cap),
                    interval.candidate_trials)


def guardrail_look(test: GuardrailTest, state: GuardrailState, interval: Interval) -> GuardrailLook:
    """Fold one interval into the guardrail's test: breached where the candidate is worse beyond doubt."""
    mixture = test.mixture
    counted = censor(test, state, interval)
    increment = np.minimum(split_test.log_ratio_increment(
        mixture, counted.stable_events + counted.candidate_events, counted.candidate_events, counted.share),
        INTERVAL_LOG_CAP)
    restart = state.looks % test.restart_every == 0
    restarts = state.restarts + int(restart)
    cumulative = split_test.accumulate(state.cumulative, increment)
    detector = split_test.detect(state.detector, increment, restart)
    evidence = split_test.log_evidence(mixture, cumulative)
    detected = split_test.log_evidence(mixture, detector)
    threshold = test.detector_threshold(restarts)
    breached = (evidence >= test.cumulative_threshold) | (detected >= threshold)
    return GuardrailLook(GuardrailState(cumulative, detector, state.looks + 1, restarts,
                                        state.stable_events + interval.stable_events,
                                        state.stable_trials + interval.stable_trials),
                         breached, evidence, detected, threshold)


# --- latency as a count: slow requests --------------------------------------------------------------


# The candidate's bound may sit this far past relativeToStable x the stable's, and no farther: a
# 1.2x guardrail on Prometheus' default buckets (0.1, 0.25, 0.5...) would test 2x, and pass a model
# twice as slow on every request.
RESOLUTION = 1.25


class Unresolvable(ValueError):
    """The histogram's buckets cannot express the guardrail's ratio: it is refused, never run at another."""


def slow_thresholds(bounds: list[float], stable_cumulative: list[float], quantile: float,
                    tolerated_ratio: float) -> tuple[float, float] | None:
    """The bucket bounds above which a request is slow: (stable's, candidate's).

    The stable's is the bound whose share of slower requests is nearest the quantile's tail (1% for
    a p99), from the stable's histogram before the test's data, in log ratio. A bound that no request
    exceeded counts as half a request's share (a continuity correction: zero seen out of n says the
    share is below 1/n, not that it is zero), so a short history whose every request falls in one
    bucket picks that bucket's upper bound, not the lower one nearly all requests exceed, which left
    the test nothing to compare. The candidate's is the smallest bound
    at least `tolerated_ratio` times it. "The candidate's p99 is within ratio x the stable's" is then
    "no more of the candidate's requests exceed the ratio x bound than the stable's exceed the bound".
    None until the histogram holds enough requests to see the tail (MIN_TAIL_REQUESTS of it).

    Raises Unresolvable when the buckets cannot express the ratio: at once when no two bounds are
    within RESOLUTION of it, or when the stable's bound has no partner within it.
    """
    finite = [(b, c) for b, c in zip(bounds, stable_cumulative, strict=True) if math.isfinite(b)]
    edges = sorted(b for b, _ in finite)
    if not edges:
        raise Unresolvable("the histogram has no bucket but +Inf: it cannot tell slow requests from fast ones")
    if tolerated_ratio != 1.0 and all(_partner(edges, b, tolerated_ratio) is None for b in edges):
        spacing = min((high / low for low, high in itertools.pairwise(edges) if low > 0), default=math.inf)
        raise Unresolvable(
            f"no two bucket bounds are {tolerated_ratio:g}x-{tolerated_ratio * RESOLUTION:.3g}x apart (the closest "
            f"are {spacing:.3g}x): add buckets spaced by at most {tolerated_ratio:g}x around the tail, or set "
            f"relativeToStable to at least {spacing:.3g}")
    total = stable_cumulative[-1] if stable_cumulative else 0.0
    tail = 1.0 - quantile
    if not total >= MIN_TAIL_REQUESTS / tail:
        return None
    stable_bound = min((abs(math.log(max(total - c, 0.5) / total / tail)), b) for b, c in finite)[1]
    partner = _partner(edges, stable_bound, tolerated_ratio)
    if partner is None:
        wanted = stable_bound * tolerated_ratio
        above = [b for b in edges if b > stable_bound]
        beyond = f"the next bound is {above[0]:g} ({above[0] / stable_bound:.3g}x)" if above else "no bound is above it"
        raise Unresolvable(
            f"the buckets cannot resolve relativeToStable {tolerated_ratio:g} at the stable's p{quantile * 100:g}: "
            f"its bound is {stable_bound:g} and {beyond}; add a bucket at {wanted:.3g}")
    return stable_bound, partner


def _partner(edges: list[float], bound: float, ratio: float) -> float | None:
    """The smallest bound at least `ratio` x `bound`, if it is within RESOLUTION of it."""
    # Bounds are written in decimals: 0.1728 is 1.2 x 0.144 though the float product is a hair above it.
    above = [b for b in edges if b >= bound * ratio * (1 - 1e-6)]
    return above[0] if above and above[0] <= bound * ratio * RESOLUTION * (1 + 1e-6) else None


# --- the abTest -------------------------------------------------------------------------------------

ABTestName = Literal["worse", "better", "below_high", "above_low"]
AB_TESTS: tuple[ABTestName, ...] = ("worse", "better", "below_high", "above_low")


@dataclass(frozen=True)
class ABDesign:
    """An abTest's design, fixed before its data: which outcome it counts (the rarer: conditioning on
    the common one would waste most of the information), the baseline rate, and the MDE as log rate
    ratios of the counted outcome (low < 0 < high).

    Where the counted rate is not small the tests run on the exact conditional law of the counts
    (`split_test.conditional_log_ratio_increments`), whose parameter is the log odds ratio: the MDE's
    bounds are carried over at the baseline."""

    alpha: float
    counted: Literal["successes", "failures"]
    baseline: float
    low: float
    high: float
    # +1 when the candidate counting more of the counted outcome is better.
    better: int

    @property
    def counted_rate(self) -> float:
        return self.baseline if self.counted == "successes" else 1.0 - self.baseline

    @property
    def conditional(self) -> bool:
        return self.counted_rate >= CONDITIONAL_RATE

    def parameter(self, log_ratio: float) -> float:
        """The tests' parameter for a log rate ratio of the counted outcome: itself, or the log odds ratio."""
        if not self.conditional:
            return log_ratio
        rate = min(max(self.counted_rate, RATE_FLOOR), 1 - RATE_FLOOR)
        moved = min(max(rate * math.exp(log_ratio), RATE_FLOOR), 1 - RATE_FLOOR)
        return math.log(moved / (1 - moved)) - math.log(rate / (1 - rate))

    def mixtures(self) -> dict[ABTestName, split_test.Mixture]:
        high, low = self.parameter(self.high), self.parameter(self.low)
        spread = max(high, -low)
        return {
            "worse": split_test.mixture(0.0, -self.better, spread, spread),
            "better": split_test.mixture(0.0, self.better, spread, spread),
            "below_high": split_test.mixture(high, -1, high, high),
            "above_low": split_test.mixture(low, 1, -low, -low),
        }

    def thresholds(self) -> dict[ABTestName, float]:
        half, whole = math.log(2.0 / self.alpha), math.log(1.0 / self.alpha)
        return {"worse": half, "better": half, "below_high": whole, "above_low": whole}

    def counts(self, interval: Interval) -> Interval:
        return interval if self.counted == "successes" else interval.complement()

    def increments(self, interval: Interval) -> dict[ABTestName, FloatArray]:
        """One interval's log likelihood ratios of the counted outcome's split, for each test."""
        counted, mixtures = self.counts(interval), self.mixtures()
        if self.conditional:
            return dict(zip(mixtures, split_test.conditional_log_ratio_increments(
                list(mixtures.values()), counted.stable_events, counted.stable_trials, counted.candidate_events,
                counted.candidate_trials), strict=True))
        events = counted.stable_events + counted.candidate_events
        return {name: split_test.log_ratio_increment(mixture, events, counted.candidate_events, counted.share)
                for name, mixture in mixtures.items()}


LOWEST_LOG_RATIO = -float(split_test.OFFSETS[-1])
# From this counted rate on, the binomial split the rare-event test assumes is more than 5% wider than
# the counts' true conditional law, and the abTest uses the exact one (benchmarks/decision_quality.py).
CONDITIONAL_RATE = 0.05
# Rates are kept this far from 0 and 1: a design sample of zeros must not divide by zero.
RATE_FLOOR = 1e-6


def ab_design(alpha: float, mde: float, effect: Literal["absolute", "relative"], higher_is_better: bool,
              successes: float, trials: float) -> ABDesign:
    """The design from the design sample's pooled rate (shrunk half an event towards 1/2)."""
    return design_at(alpha, mde, effect, higher_is_better, (successes + 0.5) / (trials + 1.0))


def design_at(alpha: float, mde: float, effect: Literal["absolute", "relative"], higher_is_better: bool,
              baseline: float) -> ABDesign:
    """The design for a known baseline rate (a plan, a simulation)."""
    rate = min(max(baseline, RATE_FLOOR), 1 - RATE_FLOOR)
    counted: Literal["successes", "failures"] = "successes" if rate <= 0.5 else "failures"
    counted_rate = rate if counted == "successes" else 1.0 - rate
    difference = mde if effect == "absolute" else mde * rate
    high = math.log((counted_rate + difference) / counted_rate)
    low = math.log((counted_rate - difference) / counted_rate) if counted_rate > difference else LOWEST_LOG_RATIO
    return ABDesign(alpha, counted, rate, max(low, LOWEST_LOG_RATIO), high, better_direction(counted, higher_is_better))


def better_direction(counted: Literal["successes", "failures"], higher_is_better: bool) -> int:
    """+1 when the candidate counting more of the counted outcome is better."""
    return 1 if (counted == "successes") == higher_is_better else -1


@dataclass(frozen=True)
class ABState:
    tests: dict[ABTestName, FloatArray]
    # The largest log e-value each test has reached: a crossing stays a rejection (Ville covers the sup).
    peaks: dict[ABTestName, FloatArray]

    @staticmethod
    def start(runs: int) -> ABState:
        return ABState({name: np.zeros((runs, split_test.OFFSETS.size)) for name in AB_TESTS},
                       {name: np.full(runs, -np.inf) for name in AB_TESTS})


# Verdict codes of the vectorised look; the analysis maps them onto api.Verdict.
NONE, WORSE, BETTER, NO_DIFFERENCE = 0, 1, 2, 3


@dataclass(frozen=True)
class ABLook:
    state: ABState
    verdict: npt.NDArray[np.int64]


def ab_look(design: ABDesign, state: ABState, interval: Interval) -> ABLook:
    tests, peaks = dict(state.tests), dict(state.peaks)
    increments = design.increments(interval)
    for name, mixture in design.mixtures().items():
        tests[name] = split_test.accumulate(state.tests[name], increments[name])
        peaks[name] = np.maximum(state.peaks[name], split_test.log_evidence(mixture, tests[name]))
    thresholds = design.thresholds()
    rejected = {name: peaks[name] >= thresholds[name] for name in AB_TESTS}
    verdict = np.where(rejected["worse"], WORSE, np.where(
        rejected["better"], BETTER, np.where(rejected["below_high"] & rejected["above_low"], NO_DIFFERENCE, NONE)))
    return ABLook(ABState(tests, peaks), verdict.astype(np.int64))


@dataclass(frozen=True)
class Plan:
    """Trials in the smaller arm that an abTest needs at a true effect of the MDE: a fixed horizon's for
    80% power, and the sequential test's median (half of its verdicts have come by then: 50% power) and
    80th percentile (80% power, like for like with the fixed horizon)."""

    fixed_horizon: int | None
    sequential_median: int
    sequential_p80: int


def plan(design: ABDesign, weight: float, power: float = POWER) -> Plan:
    """The fixed-horizon sample (two-sided, the abTest's alpha) and the sequential test's median and
    80th-percentile sample at a true effect of the MDE (the better-side bound).

    The sequential figures are where the test's evidence at that sample crosses its threshold with
    that probability: the first crossing can only come sooner, so they are upper bounds.
    """
    share = min(max(weight, 0.01), 0.99)
    counted_rate = design.baseline if design.counted == "successes" else 1.0 - design.baseline
    candidate_rate = min(counted_rate * math.exp(design.high), 1.0)
    # The smaller arm's trials, its partner having `ratio` times as many.
    ratio = max(share, 1 - share) / min(share, 1 - share)
    try:
        fixed_smaller: int | None = samples_per_arm_for_proportions(
            min(max(counted_rate, RATE_FLOOR), 1 - RATE_FLOOR),
            min(candidate_rate, 1 - RATE_FLOOR) - counted_rate, alpha=design.alpha, power=power, ratio=ratio)
    except (ValueError, ArithmeticError):
        fixed_smaller = None  # an effect too small for the solver: no fixed horizon to show
    name: ABTestName = "better" if design.better == 1 else "worse"
    mixture = design.mixtures()[name]
    threshold = design.thresholds()[name]

    def crossing(total: float, quantile: float) -> bool:
        events = total * (share * candidate_rate + (1 - share) * counted_rate)
        if design.conditional:
            mean, variance = split_test.conditional_moments(design.parameter(design.high), total * share,
                                                            total * (1 - share), events)
            x = mean + norm.ppf(1 - quantile) * math.sqrt(variance)
            increment = split_test.conditional_log_ratio_approximation(mixture, x, total * share,
                                                                       total * (1 - share), events)
        else:
            q = share * candidate_rate / (share * candidate_rate + (1 - share) * counted_rate)
            x = max(events * q + norm.ppf(1 - quantile) * math.sqrt(max(events * q * (1 - q), 1e-12)), 0.0)
            increment = split_test.log_ratio_increment(mixture, np.array([events]), np.array([x]),
                                                       np.array([share]))
        return bool(split_test.log_evidence(mixture, increment)[0] >= threshold)

    def needed(quantile: float) -> int:
        low, high = 1.0, 1e4
        while not crossing(high, quantile) and high < 1e12:
            low, high = high, high * 10
        for _ in range(60):
            middle = math.sqrt(low * high)
            low, high = (low, middle) if crossing(middle, quantile) else (middle, high)
        return math.ceil(high * min(share, 1 - share))

    return Plan(fixed_smaller, needed(0.5), needed(POWER))


# --- the sample-ratio check -------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRatioTest:
    expected_share: float
    alpha: float = SRM_ALPHA

    def mixtures(self) -> dict[str, split_test.Mixture]:
        return {"above": split_test.mixture(0.0, 1, SRM_SPREAD), "below": split_test.mixture(0.0, -1, SRM_SPREAD)}

    @property
    def threshold(self) -> float:
        return math.log(2.0 / self.alpha)


@dataclass(frozen=True)
class SampleRatioLook:
    tests: dict[str, FloatArray]
    evidence: FloatArray
    mismatch: BoolArray


def sample_ratio_look(test: SampleRatioTest, tests: dict[str, FloatArray], stable_requests: FloatArray,
                      candidate_requests: FloatArray, spans: tuple[FloatArray, FloatArray] | None = None
                      ) -> SampleRatioLook:
    """Requests are the events here, and the route weight is where they should land: an arm that
    merely errors more changes nothing.

    `spans` are the seconds each arm's counts cover (stable, candidate): Prometheus scrapes each pod
    at its own phase, so one arm's interval can hold two scrapes where the other's holds one. At a
    steady request rate each arm then counts in proportion to its weight times its span, and that is
    the share an interval is tested against."""
    share = np.full(stable_requests.shape, test.expected_share)
    if spans is not None:
        weighted = (share * spans[1], (1 - share) * spans[0])
        total = weighted[0] + weighted[1]
        share = np.asarray(np.divide(weighted[0], total, out=share.copy(), where=total > 0), dtype=np.float64)
    updated: dict[str, FloatArray] = {}
    evidence = np.full(stable_requests.shape, -np.inf)
    for name, mixture in test.mixtures().items():
        increment = split_test.log_ratio_increment(mixture, stable_requests + candidate_requests,
                                                   candidate_requests, share)
        updated[name] = split_test.accumulate(tests[name], increment)
        evidence = np.maximum(evidence, split_test.log_evidence(mixture, updated[name]))
    return SampleRatioLook(updated, evidence, evidence >= test.threshold)


def start_sample_ratio(runs: int) -> dict[str, FloatArray]:
    return {name: np.zeros((runs, split_test.OFFSETS.size)) for name in ("above", "below")}

