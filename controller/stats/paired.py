"""Anytime-valid tests on paired answers: both models answered the same mirrored request.

Each compared request falls in one cell of a small table (whether the candidate's answer matches
the stable's; on a request the stable answered twice, whether the stable matched itself; whether
the candidate took more than k times the stable's time). A test gives each cell a score x_c in a
bounded range and asks whether the mean score per request exceeds a null m.

Testing by betting (Shafer & Vovk, "Game-Theoretic Foundations for Probability and Finance", 2019;
Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", JRSS-B 2024): for
any bet lambda in [0, 1 / (m - min x)], K_t = prod_i (1 + lambda (x_i - m)) is a nonnegative
supermartingale while each request's conditional mean is at most m, and so is an average of such
K over a fixed grid of bets with fixed weights. Ville's inequality bounds P(ever K >= 1/alpha) by
alpha, however often one looks and whatever the traffic does between looks.

With the bets fixed in advance, K depends on the requests only through how many fell in each
cell: a test is a function of the comparator's cumulative counters. Nothing is remembered between
looks, a restart of the operator loses nothing, and a restart of the comparator is Prometheus's
counter reset, handled as it is for every other counter. Fixed bets cost some power against the
best bet in hindsight, at most the log of the grid weight near it (Waudby-Smith & Ramdas, section
5, on mixtures over lambda); the decision-quality benchmark measures what is left.

A confidence sequence for the mean comes from inverting the test over a grid of nulls, each side
at alpha / 2 (the same paper, section 4).

Every function takes counts with a leading axis of runs: the operator passes one run, the
decision-quality benchmark thousands, through the same code.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Bets as fractions of the largest safe bet, geometric, equally weighted: a prior over how large
# the effect is, from about a thousandth of the score's range to nearly all of it.
FRACTIONS = np.geomspace(1 / 1024, 0.9, 24)
_LOG_WEIGHT = -math.log(FRACTIONS.size)


@dataclass(frozen=True)
class Score:
    """What each cell of the counts scores, in the cells' order; NaN: the cell's requests are not
    observations of this test (they neither win nor lose a bet)."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        scored = [v for v in self.values if not math.isnan(v)]
        if not scored or not all(math.isfinite(v) for v in scored):
            raise ValueError(f"a score needs finite values for some of its cells, not {self.values!r}")

    @property
    def low(self) -> float:
        return min(v for v in self.values if not math.isnan(v))

    @property
    def high(self) -> float:
        return max(v for v in self.values if not math.isnan(v))

    def negated(self) -> Score:
        return Score(tuple(-v for v in self.values))

    def mean(self, counts: npt.ArrayLike) -> float | None:
        """The mean score of one run's counts; None without an observation."""
        n = _counts(counts, len(self.values))[0]
        values = np.asarray(self.values, dtype=np.float64)
        scored = ~np.isnan(values)
        total = float(n[scored].sum())
        return float(n[scored] @ values[scored]) / total if total > 0 else None


def _counts(counts: npt.ArrayLike, cells: int) -> FloatArray:
    array = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    if array.shape[-1] != cells:
        raise ValueError(f"counts must have one column per cell ({cells}), not {array.shape[-1]}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError("counts must be finite and non-negative")
    return array


def bets(score: Score, null: float) -> FloatArray:
    """The grid of bets on 'the mean is above `null`': each keeps 1 + lambda (x - null) > 0."""
    below = null - score.low
    largest = 1.0 / below if below > 0 else 1.0 / max(score.high - null, 1e-12)
    return np.asarray(FRACTIONS * largest, dtype=np.float64)


def log_evidence(score: Score, null: float, counts: npt.ArrayLike) -> FloatArray:
    """log of the e-value against 'the mean score is at most `null`', from cumulative cell counts: (runs,)."""
    values = np.asarray(score.values, dtype=np.float64)
    n = _counts(counts, values.size)
    # (G, C): log(1 + lambda_g (x_c - null)) for each bet and cell; 0 for cells not scored.
    factors = np.nan_to_num(np.log1p(bets(score, null)[:, None] * (values - null)[None, :]), nan=0.0)
    log_wealth = n @ factors.T  # (runs, G)
    peak = np.max(log_wealth, axis=-1, keepdims=True)
    return np.asarray(np.log(np.mean(np.exp(log_wealth - peak), axis=-1)) + peak[:, 0], dtype=np.float64)


def log_threshold(alpha: float) -> float:
    """Ville's bound: the e-value reaches 1/alpha with probability at most alpha under the null."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, not {alpha!r}")
    return math.log(1.0 / alpha)


def confidence_sequence(score: Score, counts: npt.ArrayLike, alpha: float,
                        grid: int = 401) -> tuple[float, float]:
    """The means not rejected by either one-sided test at alpha / 2, for one run's counts: (low, high).

    With no counts it is the score's whole range."""
    n = _counts(counts, len(score.values))
    if n.shape[0] != 1:
        raise ValueError("a confidence sequence is for one run")
    low, high = confidence_sequences(score, n, alpha, grid)
    return float(low[0]), float(high[0])


def confidence_sequences(score: Score, counts: npt.ArrayLike, alpha: float,
                         grid: int = 401) -> tuple[FloatArray, FloatArray]:
    """`confidence_sequence` of every run at once: (lows, highs), each (runs,)."""
    n = _counts(counts, len(score.values))
    nulls = np.linspace(score.low, score.high, grid)
    limit = log_threshold(alpha / 2)
    # Mean above m is rejected (m too high) by the test of the negated score against -m, and below m
    # (m too low) by the test of the score against m.
    kept = np.stack([(log_evidence(score, float(m), n) < limit) & (log_evidence(score.negated(), -float(m), n) < limit)
                     for m in nulls], axis=1)  # (runs, grid)
    values = np.asarray(score.values, dtype=np.float64)
    scored = ~np.isnan(values)
    totals = n[:, scored].sum(axis=1)
    means = np.where(totals > 0, (n[:, scored] @ values[scored]) / np.maximum(totals, 1e-300), np.nan)
    # Where the grid is coarser than the interval, it holds the mean; with no counts, the whole range.
    fallback_low = np.where(np.isnan(means), score.low, means)
    fallback_high = np.where(np.isnan(means), score.high, means)
    any_kept = kept.any(axis=1)
    low = np.where(any_kept, nulls[np.argmax(kept, axis=1)], fallback_low)
    high = np.where(any_kept, nulls[grid - 1 - np.argmax(kept[:, ::-1], axis=1)], fallback_high)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


# --- the comparator's cells --------------------------------------------------------------------

# A compared request is answered by the stable and the candidate; a share of them (noisePercent) by
# the stable a second time. `same`/`differs`: the candidate's answer against the stable's first,
# then (for requests answered twice) the stable's second against its first.
DISAGREEMENT_CELLS = ("once/same", "once/differs", "twice/same/same", "twice/same/differs",
                      "twice/differs/same", "twice/differs/differs")


def disagreement_excess(noise_share: float) -> Score:
    """The candidate's disagreement minus the stable's with itself, per compared request.

    D - S N / pi: D the candidate differs, N the stable's second answer differs, S whether the request
    was answered twice (drawn with probability pi before any answer). Its mean is exactly
    P(D) - P(N), over every compared request, not only those answered twice."""
    if not 0.0 < noise_share <= 1.0:
        raise ValueError(f"the noise share must lie in (0, 1], not {noise_share!r}")
    weight = 1.0 / noise_share
    return Score((0.0, 1.0, 0.0, -weight, 1.0, 1.0 - weight))


# Only the requests answered twice, paired on the request itself: D - N.
PAIRED_EXCESS = Score((math.nan, math.nan, 0.0, -1.0, 1.0, 0.0))


# The two disagreement rates, for a person: the candidate's with the stable over every compared
# request, and the stable's with itself over the requests it answered twice.
CANDIDATE_RATE = Score((0.0, 1.0, 0.0, 0.0, 1.0, 1.0))
NOISE_RATE = Score((math.nan, math.nan, 0.0, 1.0, 0.0, 1.0))


def bucket_floors(edges: tuple[float, ...]) -> Score:
    """A histogram's buckets (upper edges, the last +Inf) scored by their lower edge: a mean of these
    is never above the true mean, so a test that the mean exceeds a bound stays valid on coarse buckets."""
    if not edges or not math.isinf(edges[-1]) or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"bucket edges must rise and end at +Inf, not {edges!r}")
    return Score((0.0, *edges[:-1]))


# Paired latency: the candidate took more than k times the stable's time on the same request, or not.
SLOWER_CELLS = ("within", "slower")
SLOWER = Score((0.0, 1.0))


# --- labels that arrive later: both models scored on the same request --------------------------

# A labelled request: whether each model's answer was right (classification, a hit at k, or a
# regression error within its tolerance). The concordant cells score nothing: only the discordant
# pairs tell the models apart (McNemar, "Note on the sampling error of the difference between
# correlated proportions or percentages", Psychometrika 1947); the concordant ones still count in
# the mean, so a margin is on accuracy itself.
LABELLED_CELLS = ("both-right", "stable-only", "candidate-only", "both-wrong")
# The candidate's accuracy minus the stable's, per labelled request.
ACCURACY_GAIN = Score((0.0, -1.0, 1.0, 0.0))
STABLE_ACCURACY = Score((1.0, 1.0, 0.0, 0.0))
CANDIDATE_ACCURACY = Score((1.0, 0.0, 1.0, 0.0))


# A labelled regression: the candidate's absolute error minus the stable's on the same request,
# clipped to [-B, B] (B: labels.maxError) and counted in ERROR_BUCKETS equal buckets. Scored by the
# bucket's lower edge, a mean never above the true one (a breach stays valid); by its upper edge,
# never below (so does an early pass). A paired test on score differences (Choe & Ramdas, "Comparing
# sequential forecasters", Operations Research 2024), on coarse bins.
ERROR_BUCKETS = 40


def error_cell(difference: float, bound: float) -> int:
    """The bucket of a clipped error difference: 0 holds [-B, -B + w), the last holds [B - w, B]."""
    clipped = min(max(difference, -bound), bound)
    return min(ERROR_BUCKETS - 1, max(0, math.floor((clipped + bound) * ERROR_BUCKETS / (2 * bound))))


def error_floors(bound: float) -> Score:
    return Score(tuple(-bound + k * 2 * bound / ERROR_BUCKETS for k in range(ERROR_BUCKETS)))


def error_ceilings(bound: float) -> Score:
    return Score(tuple(-bound + (k + 1) * 2 * bound / ERROR_BUCKETS for k in range(ERROR_BUCKETS)))


# --- a judge's preference between the two answers ------------------------------------------------

# What a judge model preferred on one pair, shown blind as A and B in a random order. Ties are no
# observation of the sign test (Dixon & Mood, "The statistical sign test", JASA 1946).
JUDGED_CELLS = ("candidate", "stable", "tie")
# The stable's share of the decided pairs: above 1/2 + margin, the candidate loses.
STABLE_WINS = Score((0.0, 1.0, math.nan))
# The stable's share of a judge's verdicts, a tie counting half: the quantity a human-calibrated
# judge is corrected toward.
STABLE_SHARE = Score((0.0, 1.0, 0.5))
# Pairs a human judged too, by (the judge's verdict, the human's): y - f, the judge's error on each.
CALIBRATION_CELLS = tuple(f"{judge}/{human}" for judge in JUDGED_CELLS for human in JUDGED_CELLS)
JUDGE_ERROR = Score(tuple(STABLE_SHARE.values[h] - STABLE_SHARE.values[j]
                          for j in range(len(JUDGED_CELLS)) for h in range(len(JUDGED_CELLS))))


def prediction_powered(judged: npt.ArrayLike, calibration: npt.ArrayLike,
                       alpha: float) -> tuple[FloatArray, FloatArray]:
    """A confidence sequence for the stable's share of *human* preferences, from many pairs only a
    judge saw and a few a human judged too: prediction-powered inference (Angelopoulos, Bates, Fannjiang,
    Jordan & Zrnic, "Prediction-powered inference", Science 382, 2023), the judge's mean corrected by its
    mean error on the human-judged pairs. Each part is a betting confidence sequence at alpha / 2, so
    their sum holds at every look with probability 1 - alpha (a union bound: anytime-valid, unlike the
    paper's fixed-sample interval). Per run: (lows, highs)."""
    judge_low, judge_high = confidence_sequences(STABLE_SHARE, judged, alpha / 2)
    error_low, error_high = confidence_sequences(JUDGE_ERROR, calibration, alpha / 2)
    return np.maximum(0.0, judge_low + error_low), np.minimum(1.0, judge_high + error_high)
