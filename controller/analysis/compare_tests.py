"""The shadow step's comparisons (`compare:`), look by look, from the comparator's cell counts.

- `disagreement`: breach when the candidate disagrees with the stable more often than the stable
  disagrees with itself, by more than maxExcess.
- `noWorse`: the step may end early when the opposite is shown: the excess is below maxExcess.
- `pairedLatency`: breach when, on the same request, the candidate takes more than k times the
  stable's time more often than not (a sign test on the per-request ratio: the request's own size,
  which dominates LLM latency, cancels).
- `outputDelta`: breach when the mean absolute numeric output delta is above a bound.

Each is a betting test (`controller.stats.paired`, after Waudby-Smith & Ramdas, "Estimating means
of bounded random variables by betting", JRSS-B 2024) on cumulative counts, so a look needs no
state and a restart loses nothing.

The disagreement tests average two e-processes, which is an e-process too (Vovk & Wang, "E-values:
calibration, combination and applications", Ann. Statist. 2021): one on D - S N / pi over every
compared request (D: the candidate differs; N: the stable's second answer differs; S: the request
was answered twice, drawn with probability pi), inverse-probability weighted so its mean is the
excess itself; and one on D - N over the requests answered twice only, paired on the request.
The first uses every candidate answer; the second cancels what the two disagreements share on
the same hard request. Measured (`benchmarks.decision_quality --stress --only paired-speed`, a
candidate 5 points above noise + maxExcess, median compared requests over 500 runs): the average
needed 1,460 against 1,520 (weighted alone) and 1,960 (paired alone) with a stable 5% noisy, 4,560
against 5,380 and 5,160 at 30%, and 800 against 740 and 1,060 with a deterministic stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.stats import paired
from controller.stats.paired import FloatArray, Score


@dataclass(frozen=True)
class ComparisonTest:
    """One comparison: scores per cell whose e-values are averaged, the null each score's mean is
    tested against, and its alpha."""

    scores: tuple[Score, ...]
    null: float
    alpha: float

    def look(self, counts: npt.ArrayLike) -> ComparisonLook:
        """The evidence in the cumulative cell counts, per run."""
        each = np.stack([paired.log_evidence(score, self.null, counts) for score in self.scores])
        evidence = np.asarray(np.logaddexp.reduce(each, axis=0) - math.log(len(self.scores)), dtype=np.float64)
        return ComparisonLook(evidence, evidence >= paired.log_threshold(self.alpha))


@dataclass(frozen=True)
class ComparisonLook:
    log_evidence: FloatArray
    decided: npt.NDArray[np.bool_]


def disagreement(alpha: float, noise_share: float, max_excess: float) -> ComparisonTest:
    """Breach: P(candidate differs) - P(stable differs from itself) > max_excess."""
    return ComparisonTest((paired.disagreement_excess(noise_share), paired.PAIRED_EXCESS), max_excess, alpha)


def no_worse(alpha: float, noise_share: float, max_excess: float) -> ComparisonTest:
    """Pass early: P(candidate differs) - P(stable differs from itself) < max_excess."""
    return ComparisonTest((paired.disagreement_excess(noise_share).negated(), paired.PAIRED_EXCESS.negated()),
                          -max_excess, alpha)


def paired_latency(alpha: float) -> ComparisonTest:
    """Breach: the candidate took over k times the stable's time on more than half of the requests
    (counts over `paired.SLOWER_CELLS`, k the guardrail's relativeToStable, which the comparator counts at)."""
    return ComparisonTest((paired.SLOWER,), 0.5, alpha)


def output_delta(alpha: float, edges: tuple[float, ...], bound: float) -> ComparisonTest:
    """Breach: the mean absolute output delta is above `bound` (counts per histogram bucket)."""
    return ComparisonTest((paired.bucket_floors(edges),), bound, alpha)


def rates(counts: npt.ArrayLike, alpha: float) -> dict[str, tuple[float | None, tuple[float, float]]]:
    """Both disagreement rates of one run, each with its confidence sequence at `alpha`."""
    return {name: (score.mean(counts), paired.confidence_sequence(score, counts, alpha))
            for name, score in (("candidate", paired.CANDIDATE_RATE), ("stable", paired.NOISE_RATE))}


def accuracy_worse(alpha: float, max_drop: float) -> ComparisonTest:
    """Breach: the stable's accuracy minus the candidate's, on the same labelled requests, is above
    max_drop (counts over `paired.LABELLED_CELLS`)."""
    return ComparisonTest((paired.ACCURACY_GAIN.negated(),), max_drop, alpha)


def accuracy_no_worse(alpha: float, max_drop: float) -> ComparisonTest:
    """Pass early: the candidate's accuracy is no more than max_drop below the stable's."""
    return ComparisonTest((paired.ACCURACY_GAIN,), -max_drop, alpha)


def judged_worse(alpha: float, margin: float) -> ComparisonTest:
    """Breach: a judge prefers the stable on more than 1/2 + margin of the pairs it decides (ties
    excluded; counts over `paired.JUDGED_CELLS`)."""
    return ComparisonTest((paired.STABLE_WINS,), 0.5 + margin, alpha)


def judged_no_worse(alpha: float, margin: float) -> ComparisonTest:
    """Pass early: the judge prefers the stable on fewer than 1/2 + margin of the decided pairs."""
    return ComparisonTest((paired.STABLE_WINS.negated(),), -(0.5 + margin), alpha)


def error_worse(alpha: float, bound: float, max_increase: float) -> ComparisonTest:
    """Breach: the candidate's mean absolute error minus the stable's, on the same labelled regression
    requests, is above max_increase (counts over the `paired.ERROR_BUCKETS` buckets of the clipped difference,
    each scored by its lower edge)."""
    return ComparisonTest((paired.error_floors(bound),), max_increase, alpha)


def error_no_worse(alpha: float, bound: float, max_increase: float) -> ComparisonTest:
    """Pass early: that difference is below max_increase (each bucket scored by its upper edge)."""
    return ComparisonTest((paired.error_ceilings(bound).negated(),), -max_increase, alpha)
