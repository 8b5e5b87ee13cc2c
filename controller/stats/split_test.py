"""Anytime-valid tests of how events split between the stable and the candidate.

Every count test of the operator is one question: of the events seen in an interval (errors,
slow requests, conversions, requests), how many landed in the candidate's arm? Under "the candidate
is no different", an event lands there with the null share `rho` of the interval: the candidate's
share of trials for a rate comparison, the route weight for a sample-ratio check. Lindon & Malek,
"Anytime-Valid Inference for Multinomial Count Data" (NeurIPS 2022), and Lindon, Ham, Tingley &
Bojinov, "Anytime-Valid Linear Models and Regression Adjusted Causal Inference" / Netflix's canary
counts (2022) test exactly this with a mixture likelihood ratio, which stays valid however often one
looks and whatever the traffic does between looks.

Here the alternative tilts the share by a rate ratio e^lambda: the event share becomes
rho e^lambda / (1 - rho + rho e^lambda). The log likelihood ratio of E events with x in the candidate is

    (lambda - lambda0) x - E [log(1 - rho + rho e^lambda) - log(1 - rho + rho e^lambda0)],

a product over intervals even when rho changes between them, so the mixture is over a fixed grid of
lambdas with half-normal prior weights (Johari, Pekelis & Walsh's mSPRT scale, "Always Valid
Inference", 2015) instead of Lindon & Malek's conjugate Dirichlet, which needs one constant rho.
Conditional on an interval's trials, binomial events split hypergeometrically, which is less spread
than the binomial split the ratio assumes; the ratio is convex in x, so its mean stays at most 1
(Hoeffding, "Probability Inequalities for Sums of Bounded Random Variables", 1963, Theorem 4) and the
test is valid at any base rate and any split, including empty and rare cells: no variance is
estimated. A composite null lambda <= lambda0 is valid too: the ratio's mean falls with lambda.

The binomial split wastes information once events are not rare: conditional on both arms' trials
and the interval's events, Bernoulli events split by Fisher's noncentral hypergeometric law (Fisher,
"The Logic of Inductive Inference", 1935; Harkness, "Properties of the Extended Hypergeometric
Distribution", Ann. Math. Statist. 1965), whose spread shrinks by the factor 1 - p at a base rate p:
half the binomial's at p = 1/2. `conditional_log_ratio_increments` is its exact likelihood ratio in
the log odds ratio psi, whose mean under the null is exactly 1 (a ratio of two probability laws on
the same support) and which falls for psi below the null (the law has a monotone likelihood ratio in
x), so the same mixtures and thresholds stay valid. The abTest uses it where its base rate is not
small; `conditional_log_ratio_approximation` is the large-sample form a plan needs (Cornfield, "A
Statistical Problem Arising from Retrospective Studies", 1956).

Two statistics run on the same ratios:
- the cumulative mixture (Ville's inequality: P(ever >= 1/alpha) <= alpha), fastest for an effect
  present from the start;
- a Shiryaev-Roberts e-detector for an effect that starts late (Shin, Ramdas & Rinaldo, "E-detectors:
  a nonparametric framework for sequential change detection", 2023), so that a long quiet period
  does not bury a regression. R <- (R + 1) L at a restart point, R <- R L between them, leaves
  R minus the number of restarts a supermartingale, so P(R >= A before the H-th restart) <= H / A.
  Restarting every few minutes rather than at every look divides that H, and so the evidence a late
  regression must gather, by the looks between restarts. Over doubling epochs of the design horizon
  the thresholds 2 H 4^m / alpha keep the total at alpha for any length of step.

Every function takes arrays with a leading axis of runs: the operator passes one run, the
decision-quality benchmark thousands, through the same code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, logsumexp

FloatArray = npt.NDArray[np.float64]

# Offsets |lambda - lambda0| the mixture spreads over: a 0.5% to a 20-fold change in rate, geometric.
OFFSETS = np.geomspace(0.005, 3.0, 40)
_SPACING = OFFSETS * math.log(OFFSETS[1] / OFFSETS[0])  # d(offset) of each grid point, for the quadrature


@dataclass(frozen=True)
class Mixture:
    """The alternatives of one one-sided test and their prior weights, against the null `null`.

    `direction` +1 looks for the candidate's share rising above the null (lambda > lambda0),
    -1 for it falling below.
    """

    null: float
    direction: int
    scale: float
    center: float = 0.0

    @property
    def alternatives(self) -> FloatArray:
        return np.asarray(self.null + self.direction * OFFSETS, dtype=np.float64)

    @functools.cached_property
    def log_weights(self) -> FloatArray:
        # A normal density (over the offsets, so half-normal when centred at 0) times each point's
        # spacing, normalised: a discretised normal mixture.
        log_density = -0.5 * ((OFFSETS - self.center) / self.scale) ** 2 + np.log(_SPACING)
        return np.asarray(log_density - logsumexp(log_density), dtype=np.float64)


@functools.lru_cache(maxsize=4096)
def mixture(null: float, direction: int, scale: float, center: float = 0.0) -> Mixture:
    """The mixture of these parameters; the same parameters give the same object (its weights are kept)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, not {direction!r}")
    if not (math.isfinite(null) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"null must be finite and scale positive: {null!r}, {scale!r}")
    return Mixture(float(null), direction, float(scale), float(center))


def log_partition(share: FloatArray, log_ratio: FloatArray) -> FloatArray:
    """log(1 - rho + rho e^lambda) for every run's share (runs,) and every lambda (G,): (runs, G)."""
    rho = np.clip(np.asarray(share, dtype=np.float64), 0.0, 1.0)[:, None]
    with np.errstate(divide="ignore"):
        return np.asarray(np.logaddexp(np.log1p(-rho), np.log(rho) + np.asarray(log_ratio)[None, :]),
                          dtype=np.float64)


def log_ratio_increment(test: Mixture, events: FloatArray, candidate_events: FloatArray,
                        share: FloatArray) -> FloatArray:
    """This interval's log likelihood ratio of each alternative against the null: (runs, G).

    Callers keep 0 <= candidate_events <= events and 0 <= share <= 1; a share of 0 or 1 with the
    events all on the possible side carries no evidence (ratio 1).
    """
    events = np.asarray(events, dtype=np.float64)
    x = np.asarray(candidate_events, dtype=np.float64)
    alternatives = test.alternatives
    null_partition = log_partition(share, np.array([test.null]))
    tilt = (alternatives - test.null)[None, :] * x[:, None]
    increment = tilt - events[:, None] * (log_partition(share, alternatives) - null_partition)
    # 0 * inf (an event on a side the share says is impossible) has no evidence to give, not NaN.
    return np.asarray(np.nan_to_num(increment, nan=0.0, posinf=0.0, neginf=0.0), dtype=np.float64)


# Cells of (runs, support) held at once: bounds the memory.
_CONDITIONAL_CELLS = 4_000_000
# exp(psi * offset) stays below e^600 inside a block of the support: float64 holds up to e^709.
_BLOCK_EXPONENT = 600.0


def _log_choose(n: FloatArray, k: FloatArray) -> FloatArray:
    return np.asarray(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1), dtype=np.float64)


def _whole(values: FloatArray) -> FloatArray:
    return np.rint(np.maximum(np.asarray(values, dtype=np.float64), 0.0))


def _log_normaliser(terms: FloatArray, psi: FloatArray) -> FloatArray:
    """log sum_j exp(terms[r, j] + psi[g] j) for every run r and parameter g: (runs, G).

    Block by block of j as a matrix product (BLAS instead of an exp per run, parameter and j): within a
    block, exp(terms - the block's peak) <= 1 and exp(psi (j - the block's centre)) stays in range, and
    the term at the peak contributes at least e^-600, so no block sum underflows. Exact to rounding."""
    runs, width = terms.shape
    half = max(1, int(_BLOCK_EXPONENT / max(float(np.max(np.abs(psi), initial=0.0)), 1e-9)))
    total = np.full((runs, psi.size), -np.inf)
    for first in range(0, width, 2 * half):
        block = terms[:, first:first + 2 * half]
        peak = np.max(block, axis=1)
        present = np.isfinite(peak)
        peak = np.where(present, peak, 0.0)
        centre = first + (block.shape[1] - 1) / 2
        tilt = np.exp(np.outer(np.arange(first, first + block.shape[1]) - centre, psi))
        with np.errstate(divide="ignore"):
            part = np.log(np.exp(block - peak[:, None]) @ tilt) + peak[:, None] + centre * psi[None, :]
        total = np.logaddexp(total, np.where(present[:, None], part, -np.inf))
    return total


def conditional_log_ratio_increments(tests: Sequence[Mixture], stable_events: FloatArray, stable_trials: FloatArray,
                                     candidate_events: FloatArray, candidate_trials: FloatArray) -> list[FloatArray]:
    """This interval's exact conditional log likelihood ratio of each test's alternative log odds
    ratios against its null: (runs, G) per test, from one pass over the support. Counts are rounded to
    whole trials (Prometheus' extrapolated increases are not), and events beyond an arm's trials are
    capped by them."""
    n_c, n_s = _whole(candidate_trials), _whole(stable_trials)
    x = np.minimum(_whole(candidate_events), n_c)
    events = x + np.minimum(_whole(stable_events), n_s)
    low, high = np.maximum(0.0, events - n_s), np.minimum(n_c, events)
    offsets = np.arange(int(np.max(high - low, initial=0.0)) + 1, dtype=np.float64)
    psi = np.concatenate([np.concatenate(([test.null], test.alternatives)) for test in tests])
    log_normaliser = np.zeros((x.size, psi.size))
    rows = max(1, _CONDITIONAL_CELLS // offsets.size)
    for first in range(0, x.size, rows):
        part = slice(first, first + rows)
        support = low[part, None] + offsets[None, :]
        with np.errstate(invalid="ignore"):
            terms = np.where(support <= high[part, None], _log_choose(n_c[part, None], support)
                             + _log_choose(n_s[part, None], events[part, None] - support), -np.inf)
        # The support starts at `low`: sum_j over it, times e^(psi low).
        log_normaliser[part] = _log_normaliser(terms, psi) + low[part, None] * psi[None, :]
    # One possible split (no trials on a side, no events, all events) carries no evidence.
    informative = (high > low)[:, None]
    increments, column = [], 0
    for test in tests:
        size = test.alternatives.size
        null, alternatives = log_normaliser[:, column], log_normaliser[:, column + 1:column + 1 + size]
        column += 1 + size
        increment = (test.alternatives - test.null)[None, :] * x[:, None] - (alternatives - null[:, None])
        increments.append(np.asarray(np.where(informative, increment, 0.0), dtype=np.float64))
    return increments


def _cornfield_mean(psi: FloatArray, candidate_trials: float, stable_trials: float, events: float) -> FloatArray:
    """The noncentral hypergeometric mean of x in large samples: the root in (low, high) of
    x (n_s - E + x) = e^psi (n_c - x) (E - x), Cornfield's equation."""
    odds = np.exp(psi)
    a = 1.0 - odds
    b = stable_trials - events + odds * (candidate_trials + events)
    c = -odds * candidate_trials * events
    near_one = np.abs(a) < 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.where(near_one, -c / b, (-b + np.sqrt(b * b - 4 * a * c)) / (2 * np.where(near_one, 1.0, a)))
    return np.asarray(np.clip(root, max(0.0, events - stable_trials), min(candidate_trials, events)),
                      dtype=np.float64)


def conditional_moments(psi: float, candidate_trials: float, stable_trials: float, events: float
                        ) -> tuple[float, float]:
    """Large-sample mean and variance of the candidate's events at log odds ratio psi (Cornfield's
    mean; the variance is the inverse of the four cells' summed reciprocals)."""
    mean = float(_cornfield_mean(np.array([psi]), candidate_trials, stable_trials, events)[0])
    cells = (mean, candidate_trials - mean, events - mean, stable_trials - events + mean)
    return mean, 1.0 / sum(1.0 / max(cell, 1e-12) for cell in cells)


def conditional_log_ratio_approximation(test: Mixture, candidate_events: float, candidate_trials: float,
                                        stable_trials: float, events: float) -> FloatArray:
    """The conditional log likelihood ratio of one large interval: (psi - psi0) x minus the log
    normaliser's rise, which is the integral of the mean over psi (d log Z / d psi = E[x]): (1, G)."""
    ratios = []
    for alternative in test.alternatives:
        grid = np.linspace(test.null, alternative, 65)
        rise = float(np.trapezoid(_cornfield_mean(grid, candidate_trials, stable_trials, events), grid))
        ratios.append((alternative - test.null) * candidate_events - rise)
    return np.array([ratios], dtype=np.float64)


def start(runs: int) -> tuple[FloatArray, FloatArray]:
    """Fresh (cumulative, detector) states: log ratios 0 and an empty detector (log 0)."""
    return np.zeros((runs, OFFSETS.size)), np.full((runs, OFFSETS.size), -np.inf)


def accumulate(cumulative: FloatArray, increment: FloatArray) -> FloatArray:
    return cumulative + increment


def detect(detector: FloatArray, increment: FloatArray, restart: bool) -> FloatArray:
    """Shiryaev-Roberts per alternative: R <- (R + 1) L at a restart point, R <- R L between them; in logs."""
    base = np.logaddexp(detector, 0.0) if restart else detector
    return np.asarray(base + increment, dtype=np.float64)


def log_evidence(test: Mixture, state: FloatArray) -> FloatArray:
    """log of the mixture over the alternatives: the log e-value (cumulative) or log R (detector)."""
    return _logsumexp(test.log_weights[None, :] + state)


def _logsumexp(values: FloatArray) -> FloatArray:
    """scipy's logsumexp over the last axis without its per-call overhead (a tenth of a millisecond, at
    every look of every test)."""
    peak = np.max(values, axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(np.sum(np.exp(values - peak), axis=-1)) + peak[..., 0], dtype=np.float64)


def cumulative_log_threshold(alpha: float) -> float:
    return math.log(1.0 / alpha)


def detector_log_threshold(alpha: float, restarts: int, horizon: int) -> float:
    """log of 2 H 4^m / alpha, m the doubling epoch of the design horizon H (in restarts) that
    the restarts so far fall in."""
    horizon = max(int(horizon), 1)
    epoch = max(0, math.ceil(math.log2(max(restarts, 1) / horizon)))
    return math.log(2.0 * horizon / alpha) + epoch * math.log(4.0)
