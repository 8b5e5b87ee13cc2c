"""A shadow step's comparison at one look: the comparator's counts since the step began, its tests,
and what a person is shown (pure).

The comparator's counters are read as totals at each look; what they gained since the last look is
added to the step's counts. Each comparator process's totals are followed apart (its series carry
`process`, its start), as Prometheus follows each series: a restarted comparator's totals start
from zero under a new process, so they are all new, even when they pass the old ones before the
operator sees them; a process whose series vanish is remembered, so that its totals coming back
(a scrape that failed) are not counted again; two processes at once (a rollout of the comparator's
Deployment) add up. Every test is a function of those counts (`compare_tests`), so a restart of the
operator or of the comparator loses nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.analysis import compare_tests
from controller.api import Compare, ComparisonStatus, JudgeStatus, LabelsStatus
from controller.stats import paired
from controller.stats.paired import CALIBRATION_CELLS, DISAGREEMENT_CELLS, JUDGED_CELLS, LABELLED_CELLS, SLOWER_CELLS

REQUESTS, SLOWER = "modelrollout_compare_requests_total", "modelrollout_compare_slower_total"
FAILURES, SKIPPED = "modelrollout_compare_failures_total", "modelrollout_compare_skipped_total"
DIFFERENCES, DELTA = "modelrollout_compare_differences_total", "modelrollout_compare_output_delta_bucket"
LABELLED, UNLABELLED = "modelrollout_compare_labelled_total", "modelrollout_compare_unlabelled_total"
FEEDBACK = "modelrollout_compare_feedback_total"
JUDGE_SERIES = {"modelrollout_compare_judged_total": "judged",
                "modelrollout_compare_judge_positions_total": "positions",
                "modelrollout_compare_judge_swaps_total": "swapped",
                "modelrollout_compare_judge_failures_total": "judge-failures",
                "modelrollout_compare_judge_skipped_total": "judge-skipped",
                "modelrollout_compare_calibration_total": "calibration",
                "modelrollout_compare_error_difference_total": "error-difference",
                "modelrollout_compare_absolute_error_total": "absolute-error"}
ERROR_CELLS = tuple(str(k) for k in range(paired.ERROR_BUCKETS))
# Processes whose vanished totals are remembered: the newest few (their names are their starts).
REMEMBERED_PROCESSES = 4
# The early passes, in the order a step needs them: each configured one must decide before passWhen
# noWorse ends the step.
NO_WORSE = ("noWorse", "labelsNoWorse", "judgeNoWorse")
# A compare path that selects nothing: the step holds, naming it, after this many answers.
MISSING_PATH_AFTER = 20
SHOWN_FIELDS = 5


@dataclass(frozen=True)
class ComparisonLook:
    status: ComparisonStatus
    # Tests that breached at this look: (test, its onBreach, why).
    breaches: tuple[tuple[str, str, str], ...]
    holding: str | None  # why the step cannot be judged (nothing compared, a path that selects nothing)


def _key(part: str) -> tuple[str, str]:
    """`<metric>|<cell>|<side>|<reason>|<le>|<field>|<process>` as (a short counts key, the process):
    (`requests/twice/same/same`, `1765100000123`)."""
    name, cell, side, reason, le, field, process = (part.split("|") + [""] * 7)[:7]
    short = {REQUESTS: "requests", SLOWER: "slower", FAILURES: "failures", SKIPPED: "skipped",
             DIFFERENCES: "differences", DELTA: "delta", LABELLED: "labelled", UNLABELLED: "unlabelled",
             FEEDBACK: "feedback", **JUDGE_SERIES}.get(name, name)
    return "/".join(x for x in (short, cell, side, reason, le, field) if x), process


def gained(totals: dict[str, float], previous: dict[str, float] | None) -> tuple[dict[str, float], dict[str, float]]:
    """(this look's gains by key, the totals to count from next, by `key@process`); None previous: a
    first look, no gains."""
    now: dict[str, float] = {}
    for part, value in totals.items():
        if math.isfinite(value):
            key, process = _key(part)
            now[f"{key}@{process}"] = now.get(f"{key}@{process}", 0.0) + value
    if previous is None:
        return {}, now
    gains: dict[str, float] = {}
    for where, value in now.items():
        before = previous.get(where, 0.0)
        # A total below its last is its process's counter reset (the same start, twice): all of it is new.
        gain = value - before if value >= before else value
        if gain:
            key = where.rsplit("@", 1)[0]
            gains[key] = gains.get(key, 0.0) + gain
    seen = {where.rsplit("@", 1)[1] for where in now}
    kept = sorted({where.rsplit("@", 1)[1] for where in previous} - seen, reverse=True)[:REMEMBERED_PROCESSES]
    remembered = {where: value for where, value in previous.items() if where.rsplit("@", 1)[1] in kept}
    return gains, {**remembered, **now}


def _cells(counts: dict[str, float], prefix: str, cells: tuple[str, ...]) -> np.ndarray:
    return np.array([[counts.get(f"{prefix}/{cell}", 0.0) for cell in cells]])


def _delta_cells(counts: dict[str, float]) -> tuple[tuple[float, ...], np.ndarray] | None:
    """The output-delta histogram's edges and per-bucket counts (from cumulative `le` counts)."""
    by_le: dict[float, float] = {}
    for key, value in counts.items():
        if key.startswith("delta/"):
            le = key.split("/", 1)[1]
            by_le[math.inf if le == "+Inf" else float(le)] = value
    if math.inf not in by_le or not by_le[math.inf]:
        return None
    edges = tuple(sorted(by_le))
    cumulative = np.maximum.accumulate(np.array([by_le[e] for e in edges]))
    return edges, np.diff(cumulative, prepend=0.0)[None, :]


def look(compare: Compare, alpha: float, totals: dict[str, float], before: ComparisonStatus | None,
         previous_totals: dict[str, float] | None, step: int | None = None) -> tuple[ComparisonLook, dict[str, float]]:
    """This look's comparison (of shadow step `step`), and the totals the next look counts from."""
    gains, now = gained(totals, previous_totals)
    base = before or ComparisonStatus()
    counts = dict(base.counts)
    for key, value in gains.items():
        counts[key] = counts.get(key, 0.0) + value
    cells = _cells(counts, "requests", DISAGREEMENT_CELLS)
    pairs, twice = float(cells.sum()), float(cells[0, 2:].sum())
    noise_share = compare.noise_percent / 100
    # The breach tests share alpha (Bonferroni); noWorse is another error, a false early pass, with its own.
    share = alpha / (1 + (compare.paired_latency is not None) + (compare.output_delta is not None)
                     + (compare.labels is not None) + (compare.judge is not None))
    breach_tests = _breach_tests(compare, counts, cells, share)
    evidence: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    breached = list(base.breached)
    new: list[str] = []
    for name, (test, test_counts) in breach_tests.items():
        result = test.look(test_counts)
        evidence[name] = round(float(result.log_evidence[0]), 4)
        thresholds[name] = round(math.log(1 / test.alpha), 4)
        if bool(result.decided[0]) and name not in breached:
            breached.append(name)
            new.append(name)
    no_worse = compare_tests.no_worse(alpha, noise_share, compare.disagreement.max_excess).look(cells)
    evidence["noWorse"] = round(float(no_worse.log_evidence[0]), 4)
    thresholds["noWorse"] = round(math.log(1 / alpha), 4)
    labels, judge, shown = _quality(compare, counts, alpha, share, evidence, thresholds)
    if judge is not None and judge.corrected_interval is not None and "judge" not in breached:
        assert compare.judge is not None
        if judge.corrected_interval[0] > 0.5 + compare.judge.margin:
            breached.append("judge")
            new.append("judge")
    if bool(no_worse.decided[0]):
        shown.add("noWorse")
    # A noWorse that decided stands for the step attempt, as a breach does.
    no_worse_shown = [name for name in NO_WORSE if name in shown or name in base.no_worse]
    required = [name for name, on in zip(NO_WORSE, (True, labels is not None, judge is not None), strict=True) if on]
    rates = compare_tests.rates(cells, alpha)
    differs = sorted(((key.split("/", 1)[1], value) for key, value in counts.items()
                      if key.startswith("differences/")), key=lambda kv: -kv[1])[:SHOWN_FIELDS]
    failures = {key.split("/", 1)[1]: value for key, value in counts.items() if key.startswith("failures/")}
    status = ComparisonStatus(
        step=step, pairs=pairs, twice=twice,
        candidate_rate=_round(rates["candidate"][0]), candidate_interval=[_round(x) for x in rates["candidate"][1]],
        stable_rate=_round(rates["stable"][0]), stable_interval=[_round(x) for x in rates["stable"][1]],
        evidence=evidence, threshold=thresholds, breached=breached,
        no_worse=no_worse_shown,
        passed=base.passed or (compare.ends_early and set(required) <= set(no_worse_shown) and not breached),
        differs_most=dict(differs), failures=failures,
        skipped={key.split("/", 1)[1]: value for key, value in counts.items() if key.startswith("skipped/")},
        counts=counts, labels=labels, judge=judge)
    reasons = tuple((name, on_breach(compare, name), _reason(name, status, compare)) for name in new)
    holding = _holding(status, compare)
    status = status.model_copy(update={"blocked": holding})
    return ComparisonLook(status, reasons, holding), now


def _breach_tests(compare: Compare, counts: dict[str, float], cells: np.ndarray,
                  share: float) -> dict[str, tuple[compare_tests.ComparisonTest, np.ndarray]]:
    """Each configured breach test, at its share of alpha, with the counts it reads."""
    found = {"disagreement": (compare_tests.disagreement(share, compare.noise_percent / 100,
                                                         compare.disagreement.max_excess), cells)}
    if compare.paired_latency is not None:
        found["pairedLatency"] = (compare_tests.paired_latency(share), _cells(counts, "slower", SLOWER_CELLS))
    delta = _delta_cells(counts)
    if compare.output_delta is not None and delta is not None:
        found["outputDelta"] = (compare_tests.output_delta(share, delta[0], compare.output_delta.max), delta[1])
    labels = compare.labels
    if labels is not None and labels.max_error is not None:
        found["labels"] = (compare_tests.error_worse(share, labels.max_error, labels.max_increase or 0.0),
                           _cells(counts, "error-difference", ERROR_CELLS))
    elif labels is not None:
        found["labels"] = (compare_tests.accuracy_worse(share, labels.max_drop), _cells(counts, "labelled",
                                                                                         LABELLED_CELLS))
    if compare.judge is not None and not compare.judge.calibration:  # calibrated: its corrected interval decides
        found["judge"] = (compare_tests.judged_worse(share, compare.judge.margin),
                          _cells(counts, "judged", JUDGED_CELLS))
    return found


def _quality(compare: Compare, counts: dict[str, float], alpha: float, share: float, evidence: dict[str, float],
             thresholds: dict[str, float]) -> tuple[LabelsStatus | None, JudgeStatus | None, set[str]]:
    """The labels' and the judge's status, their noWorse evidence added to `evidence`, and which of their
    noWorse tests decided at this look. A calibrated judge's corrected interval is at `share`, the breach
    tests' alpha, and decides both ways (its raw e-value is shown, never acted on)."""
    labels = judge = None
    shown: set[str] = set()
    if compare.labels is not None:
        labelled = _cells(counts, "labelled", LABELLED_CELLS)
        bound = compare.labels.max_error
        if bound is not None:
            errors = _cells(counts, "error-difference", ERROR_CELLS)
            no_worse_labels = compare_tests.error_no_worse(alpha, bound, compare.labels.max_increase or 0.0).look(
                errors)
        else:
            no_worse_labels = compare_tests.accuracy_no_worse(alpha, compare.labels.max_drop).look(labelled)
        evidence["labelsNoWorse"] = round(float(no_worse_labels.log_evidence[0]), 4)
        thresholds["labelsNoWorse"] = round(math.log(1 / alpha), 4)
        labels = _labels_status(counts, labelled, alpha, bound)
        if bool(no_worse_labels.decided[0]):
            shown.add("labelsNoWorse")
    if compare.judge is not None:
        judged = _cells(counts, "judged", JUDGED_CELLS)
        no_worse_judged = compare_tests.judged_no_worse(alpha, compare.judge.margin).look(judged)
        evidence["judgeNoWorse"] = round(float(no_worse_judged.log_evidence[0]), 4)
        thresholds["judgeNoWorse"] = round(math.log(1 / alpha), 4)
        judge = _judge_status(counts, judged, alpha, share if compare.judge.calibration else None)
        if judge.corrected_interval is not None:
            if judge.corrected_interval[1] < 0.5 + compare.judge.margin:
                shown.add("judgeNoWorse")
        elif bool(no_worse_judged.decided[0]):
            shown.add("judgeNoWorse")
    return labels, judge, shown


def on_breach(compare: Compare, test: str) -> str:
    """What a breach of `test` (disagreement, pairedLatency, outputDelta, labels) does: hold or rollback."""
    found = {"disagreement": compare.disagreement, "pairedLatency": compare.paired_latency,
             "outputDelta": compare.output_delta, "labels": compare.labels, "judge": compare.judge}[test]
    assert found is not None
    return found.on_breach


def _labels_status(counts: dict[str, float], labelled: np.ndarray, alpha: float,
                   bound: float | None) -> LabelsStatus:
    """Both accuracies with their confidence sequences (alpha / 2 each), and the discordant counts; for a
    regression with maxError (`bound`), both mean absolute errors and their difference's confidence sequence."""
    def accuracy(score: paired.Score) -> tuple[float | None, list[float]]:
        mean = score.mean(labelled)
        return _round(mean), [x for x in map(_round, paired.confidence_sequence(score, labelled, alpha / 2))
                              if x is not None]

    stable, candidate = accuracy(paired.STABLE_ACCURACY), accuracy(paired.CANDIDATE_ACCURACY)
    return LabelsStatus(
        labelled=float(labelled.sum()), stable_accuracy=stable[0], stable_interval=stable[1],
        candidate_accuracy=candidate[0], candidate_interval=candidate[1],
        stable_only=float(labelled[0, 1]), candidate_only=float(labelled[0, 2]),
        unlabelled=counts.get("unlabelled", 0.0),
        feedback={key.split("/", 1)[1]: value for key, value in counts.items() if key.startswith("feedback/")},
        **(_errors(counts, bound, alpha) if bound is not None else {}))


def _errors(counts: dict[str, float], bound: float, alpha: float) -> dict[str, Any]:
    """Both mean absolute errors, and the interval of their difference: low end from the buckets' lower
    edges, high end from their upper edges (each at alpha / 2)."""
    errors = _cells(counts, "error-difference", ERROR_CELLS)
    scored = float(errors.sum())
    if not scored:
        return {}
    low = paired.confidence_sequence(paired.error_floors(bound), errors, alpha)[0]
    high = paired.confidence_sequence(paired.error_ceilings(bound), errors, alpha)[1]
    return {"stable_error": _round(counts.get("absolute-error/stable", 0.0) / scored),
            "candidate_error": _round(counts.get("absolute-error/candidate", 0.0) / scored),
            "error_increase_interval": [round(low, 6), round(high, 6)]}


def _judge_status(counts: dict[str, float], judged: np.ndarray, alpha: float,
                  calibrated_alpha: float | None) -> JudgeStatus:
    """The judge's preferences, the stable's share of decided pairs with its confidence sequence, the
    position bias, and with calibration (its own alpha, the breach test's share) the corrected interval."""
    def part(prefix: str) -> dict[str, float]:
        return {key.split("/", 1)[1]: value for key, value in counts.items() if key.startswith(f"{prefix}/")}

    positions = part("positions")
    decided_asks = positions.get("first", 0.0) + positions.get("second", 0.0)
    interval = [x for x in map(_round, paired.confidence_sequence(paired.STABLE_WINS, judged, alpha)) if x is not None]
    found = JudgeStatus(
        judged=float(judged.sum()), preferred=dict(zip(JUDGED_CELLS, map(float, judged[0]), strict=True)),
        stable_wins=_round(paired.STABLE_WINS.mean(judged)), stable_wins_interval=interval,
        position_bias=_round(positions.get("first", 0.0) / decided_asks - 0.5) if decided_asks else None,
        swapped=part("swapped"), failures=part("judge-failures"), skipped=part("judge-skipped"))
    if calibrated_alpha is None:
        return found
    calibration = _cells(counts, "calibration", CALIBRATION_CELLS)
    pairs = float(calibration.sum())
    agreed = sum(counts.get(f"calibration/{cell}/{cell}", 0.0) for cell in JUDGED_CELLS)
    raw = paired.confidence_sequence(paired.STABLE_SHARE, judged, calibrated_alpha / 2)
    low, high = paired.prediction_powered(judged, calibration, calibrated_alpha)
    return found.model_copy(update={
        "calibration_pairs": pairs, "agreement": _round(agreed / pairs) if pairs else None,
        "raw_interval": [round(raw[0], 6), round(raw[1], 6)],
        "corrected_interval": [round(float(low[0]), 6), round(float(high[0]), 6)]})


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _reason(test: str, status: ComparisonStatus, compare: Compare) -> str:
    if test == "disagreement":
        shown = ", ".join(f"{name} ({count:.0f})" for name, count in status.differs_most.items())
        low, high = status.candidate_interval or [0.0, 1.0]
        noise_low, noise_high = status.stable_interval or [0.0, 1.0]
        return (f"the candidate's answers differ from the stable's on {100 * (status.candidate_rate or 0):.1f}% "
                f"[{100 * low:.1f}, {100 * high:.1f}] of {status.pairs:.0f} requests, the stable's from its own on "
                f"{100 * (status.stable_rate or 0):.1f}% [{100 * noise_low:.1f}, {100 * noise_high:.1f}]: more than "
                f"maxExcess {compare.disagreement.max_excess:g} apart"
                + (f"; differing most: {shown}" if shown else ""))
    if test == "labels":
        return _labels_reason(status, compare)
    if test == "judge":
        assert compare.judge is not None and status.judge is not None
        verdicts = status.judge
        preferred = verdicts.preferred
        shown = (f"the judge preferred the stable on {preferred.get('stable', 0):.0f}, the candidate on "
                 f"{preferred.get('candidate', 0):.0f} of {verdicts.judged:.0f} pairs ({preferred.get('tie', 0):.0f} "
                 "ties)")
        if verdicts.corrected_interval is not None:
            low, high = verdicts.corrected_interval
            return (f"{shown}; corrected by {verdicts.calibration_pairs or 0:.0f} human preferences, the "
                    f"stable's share is [{low:.3f}, {high:.3f}]: above 1/2 + margin {compare.judge.margin:g}")
        return f"{shown}: the stable wins more than 1/2 + margin {compare.judge.margin:g} of the decided pairs"
    if test == "pairedLatency":
        assert compare.paired_latency is not None
        slower = status.counts.get("slower/slower", 0.0)
        within = status.counts.get("slower/within", 0.0)
        return (f"the candidate took over {compare.paired_latency.relative_to_stable:g}x the stable's time on "
                f"{slower:.0f} of {slower + within:.0f} of the same requests")
    assert compare.output_delta is not None
    return f"the mean absolute output delta is above {compare.output_delta.max:g}"


def _labels_reason(status: ComparisonStatus, compare: Compare) -> str:
    assert compare.labels is not None and status.labels is not None
    if compare.labels.max_error is not None:
        errors = status.labels
        low, high = errors.error_increase_interval or [0.0, 0.0]
        return (f"on {errors.labelled:.0f} labelled requests the candidate's mean absolute error is "
                f"{errors.candidate_error or 0:.4g}, the stable's {errors.stable_error or 0:.4g} (the difference in "
                f"[{low:.4g}, {high:.4g}]): larger by more than maxIncrease {compare.labels.max_increase or 0:g}")
    found = status.labels
    candidate, stable = 100 * (found.candidate_accuracy or 0), 100 * (found.stable_accuracy or 0)
    return (f"on {found.labelled:.0f} labelled requests the candidate was right on {candidate:.1f}%, the stable "
            f"on {stable:.1f}% (only the stable right on {found.stable_only:.0f}, only the candidate on "
            f"{found.candidate_only:.0f}): less accurate by more than maxDrop {compare.labels.max_drop:g}")


def _holding(status: ComparisonStatus, compare: Compare) -> str | None:
    """Why nothing can be judged yet, when the comparator answers but compares nothing."""
    if status.pairs > 0:
        return None
    missing = sum(value for key, value in status.failures.items() if key.endswith("/missing-path"))
    if missing >= MISSING_PATH_AFTER:
        return (f"compare.paths {', '.join(compare.paths or [])} select nothing in {missing:.0f} answers: "
                "no request could be compared")
    failed = {key: value for key, value in status.failures.items() if value}
    if failed:
        return "nothing compared yet: " + ", ".join(f"{key} {value:.0f}" for key, value in sorted(failed.items()))
    return None

