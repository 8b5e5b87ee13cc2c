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

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

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

    @property
    def log_weights(self) -> FloatArray:
        # A normal density (over the offsets, so half-normal when centred at 0) times each point's
        # spacing, normalised: a discretised normal mixture.
        log_density = -0.5 * ((OFFSETS - self.center) / self.scale) ** 2 + np.log(_SPACING)
        return np.asarray(log_density - logsumexp(log_density), dtype=np.float64)


def mixture(null: float, direction: int, scale: float, center: float = 0.0) -> Mixture:
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
    return np.asarray(logsumexp(test.log_weights[None, :] + state, axis=1), dtype=np.float64)


def cumulative_log_threshold(alpha: float) -> float:
    return math.log(1.0 / alpha)


def detector_log_threshold(alpha: float, restarts: int, horizon: int) -> float:
    """log of 2 H 4^m / alpha, m the doubling epoch of the design horizon H (in restarts) that
    the restarts so far fall in."""
    horizon = max(int(horizon), 1)
    epoch = max(0, math.ceil(math.log2(max(restarts, 1) / horizon)))
    return math.log(2.0 * horizon / alpha) + epoch * math.log(4.0)
