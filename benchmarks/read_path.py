"""Decisions on the read path real clusters have: the operator's own `judge`, fed by a fake Prometheus
that scrapes each pod every S seconds at its own phase.

`benchmarks.decision_quality` hands the tests exact counts at every look. A real Prometheus does
not: an instant query returns, for each pod's series, its last sample before the query time, and
each pod is scraped at its own phase. So at a look one arm's counters can be up to S seconds newer
than the other's. This benchmark simulates the traffic per pod in 0.1 s ticks, keeps each pod's
counters, answers the look's `RequestCounts` readings the way `sum(counter)` answers them, and runs
`controller.analysis.judge.judge` look by look with the status it returned the look before: the
operator's path from its measurements on, status round-trip included.

Cells (one hour at 10 s looks, or `--looks`):
- A/A abTest at 50/50 with identical arms, at a 5% and a 50% base rate: any Halt is false (goal:
  <= 0.1%), and so is any CandidateBetter or CandidateWorse (goal: <= alpha);
- A/A guardrail: an errorRate guardrail at a 10% canary with identical arms; any rollback is false
  (goal: <= alpha);
- A/A guardrail with 9 stable pods and 1 candidate pod, each pod erring in episodes (one an hour,
  20 s at 20%): errors that cluster by pod (goal: <= alpha); the same for a latency guardrail, each
  pod 4x slower in its episodes;
- power: the same guardrail with the candidate's errors doubled (0.5% -> 1%, 20 req/s); caught
  within the hour (goal: >= 95% at S <= 30 s, >= 90% at S = 60 s);
- A/A drift: a predictionPSI guardrail (max 0.5) at a shadow step from its first look, predictions
  from one Beta(mean 0.3, sd 0.15) on the test model server's 0.05-wide buckets, at 1 and 20 req/s:
  any breach is false (goal: <= alpha); power: the candidate's mean at 0.5.

    python -m benchmarks.read_path                 # 40 runs a cell, a few minutes
    python -m benchmarks.read_path --runs 400      # tighter figures
    python -m benchmarks.read_path --match "A/A abTest" --runs-srm 3000 --workers 2   # <= 0.1% shown
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import beta, norm
from statsmodels.stats.proportion import proportion_confint

from controller import api
from controller.analysis.budget import step_budget
from controller.analysis.judge import Result, judge
from controller.analysis.readings import (
    Buckets,
    ErrorRate,
    Look,
    Measurements,
    Outcomes,
    Quantile,
    Reading,
    RequestCounts,
    Value,
    needs,
)
from controller.durations import parse_duration

TICK = 0.1
# Every pod has served this long when the step starts: the stable's recent past places the latency bound.
HISTORY_SECONDS = 600.0
# Prometheus' default buckets (client_golang's DefBuckets): 2-2.5x apart.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
LATENCY_MEDIAN, LATENCY_SIGMA = 0.05, 0.5
# The test model server's prediction histogram (testkit's PREDICTION_BUCKETS) and its scores.
PREDICTION_BUCKETS = (*(round(0.05 * i, 2) for i in range(1, 21)), math.inf)
PREDICTION_MEAN, PREDICTION_SPREAD = 0.3, 0.15
ALPHA = 0.05
SRM_GOAL = 0.001
STABLE, CANDIDATE = "stable", "candidate"
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Cell:
    name: str
    # "srm" (an abTest at `weight`), "guardrail" (an errorRate guardrail at a canary `weight`) or "latency"
    # (a latencyP99 guardrail, `relative_to_stable`, on DEFAULT_BUCKETS; the candidate `slower` on every request)
    kind: str
    scrape_seconds: float
    weight: int
    requests_per_second: float
    stable_error: float
    candidate_error: float
    look_seconds: float = 10.0
    pods: tuple[int, int] = (1, 1)
    # Pod-level episodes: each pod, independently, starts one at this rate (per hour), and errs at
    # `episode_error` and answers `episode_slower` times slower for `episode_seconds` (a pod that hiccups).
    episodes_per_hour: float = 0.0
    episode_seconds: float = 20.0
    episode_error: float = 0.2
    episode_slower: float = 1.0
    # Shared bursts: every pod of both arms errs at `episode_error` for `episode_seconds`, this often
    # (per hour): a dependency both versions call goes down.
    bursts_per_hour: float = 0.0
    # Pods restart this often (per hour each): their counters start again from zero.
    restarts_per_hour: float = 0.0
    relative_to_stable: float = 1.0
    slower: float = 1.0
    # A "drift" cell: the candidate's mean prediction above the stable's by this much.
    shifted: float = 0.0

    @property
    def aa(self) -> bool:
        return self.stable_error == self.candidate_error and self.slower == 1.0 and self.shifted == 0.0


def spec_for(cell: Cell) -> api.ModelRolloutSpec:
    step: dict[str, object]
    if cell.kind == "srm":
        step = {"abTest": {"weight": cell.weight, "metric": "success", "maxDuration": "24h"}}
        guardrails: list[dict[str, object]] = []
    elif cell.kind == "drift":
        step = {"shadow": {"percent": 100, "duration": "24h"}}
        guardrails = [{"name": "guarded", "template": "predictionPSI", "max": 0.5}]
    else:
        step = {"canary": {"weight": cell.weight, "duration": "24h"}}
        template = "latencyP99" if cell.kind == "latency" else "errorRate"
        guardrails = [{"name": "guarded", "template": template, "relativeToStable": cell.relative_to_stable}]
    return api.ModelRolloutSpec.model_validate({
        "model": "scorer", "replicas": 1,
        "template": {"spec": {"containers": [{"name": "model", "image": "scorer:v1"}]}},
        "trafficRouting": {"gatewayAPI": {"httpRoute": "scorer"}},
        "strategy": {"steps": [step]},
        "analysis": {"interval": f"{cell.look_seconds:g}s", "alpha": ALPHA, "guardrails": guardrails,
                     "prometheus": {"address": "http://prometheus.test:9090"}},
    })


def episodes(rng: np.random.Generator, shape: tuple[int, int], per_hour: float, seconds: float) -> BoolArray:
    """Ticks inside an episode, each row starting episodes independently at `per_hour`."""
    starts = rng.random(shape) < per_hour / 3600 * TICK
    length = int(seconds / TICK)
    # A tick is in an episode when one started within the last `length` ticks.
    running = np.cumsum(starts, axis=1, dtype=np.int64)
    running[:, length:] -= running[:, :-length].copy()
    return np.asarray(running > 0)


def restarted(counts: IntArray, resets: BoolArray) -> IntArray:
    """Cumulative counts per pod that start again from zero at each reset tick."""
    ticks = np.arange(counts.shape[1])
    last = np.maximum.accumulate(np.where(resets, ticks, -1), axis=1)
    before = np.where(last > 0, np.take_along_axis(counts, np.maximum(last - 1, 0), axis=1), 0)
    return np.asarray(counts - before)


FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Samples:
    """One arm's series as Prometheus stores them: per pod, its scrape times (ascending) and the
    counters' values then (`buckets`: observations at or under each of `edges`)."""

    times: list[FloatArray]
    ok: list[FloatArray]
    error: list[FloatArray]
    buckets: list[FloatArray] | None = None
    edges: tuple[float, ...] = DEFAULT_BUCKETS

    def _last(self, at: float) -> list[tuple[int, int]]:
        """(pod, sample) of each pod's last sample at or before `at`; pods not scraped yet are absent."""
        found = [(pod, int(np.searchsorted(times, at, side="right")) - 1) for pod, times in enumerate(self.times)]
        return [(pod, index) for pod, index in found if index >= 0]

    def instant(self, at: float) -> Outcomes:
        """`sum(counter)` and `avg(timestamp(counter))` at `at`: each pod's last sample at or before it."""
        last = self._last(at)
        return Outcomes(ok=float(sum(self.ok[pod][i] for pod, i in last)),
                        error=float(sum(self.error[pod][i] for pod, i in last)),
                        sampled_at=float(np.mean([self.times[pod][i] for pod, i in last])) if last else None)

    def histogram(self, at: float, window: float | None) -> dict[float, float]:
        """`sum by (le) (bucket)` at `at`, or its increase over `window` (the difference of the samples)."""
        assert self.buckets is not None
        buckets = self.buckets

        def total(when: float) -> FloatArray:
            return np.asarray(sum((buckets[pod][i] for pod, i in self._last(when)),
                                  np.zeros(len(self.edges))), dtype=np.float64)

        now = total(at) if window is None else total(at) - total(at - window)
        return {bound: float(count) for bound, count in zip(self.edges, now, strict=True)}


def scraped_arm(rng: np.random.Generator, pods: int, ticks: int, requests_per_tick: float, error: float,
                scrape_seconds: float, cell: Cell, bursts: BoolArray, slowed: bool = False) -> Samples:
    """Simulate one arm's pods in ticks, and scrape each every `scrape_seconds` at a phase of its own."""
    requests = rng.poisson(requests_per_tick / pods, size=(pods, ticks))
    rates = np.where(bursts[None, :], max(error, cell.episode_error), np.full((pods, ticks), error))
    inside = np.zeros((pods, ticks), dtype=bool)
    if cell.episodes_per_hour > 0:
        inside = episodes(rng, (pods, ticks), cell.episodes_per_hour, cell.episode_seconds)
        rates = np.where(inside, max(error, cell.episode_error), rates)
    errors = rng.binomial(requests, rates)
    ok, erred = np.cumsum(requests - errors, axis=1), np.cumsum(errors, axis=1)
    if cell.restarts_per_hour > 0:
        resets = rng.random((pods, ticks)) < cell.restarts_per_hour / 3600 * TICK
        ok, erred = restarted(ok, resets), restarted(erred, resets)
    buckets = None
    if cell.kind == "latency":
        slower = cell.slower if slowed else 1.0

        def shares(factor: float) -> FloatArray:
            edges = np.log(np.array(DEFAULT_BUCKETS[:-1])) - math.log(LATENCY_MEDIAN * factor)
            return np.diff(np.concatenate([[0.0], norm.cdf(edges / LATENCY_SIGMA), [1.0]]))

        usual, hiccup = shares(slower), shares(slower * cell.episode_slower)
        split = rng.multinomial(requests, np.where(inside[:, :, None], hiccup, usual))
        buckets = np.cumsum(np.cumsum(split, axis=1), axis=2)
    edges: tuple[float, ...] = DEFAULT_BUCKETS
    if cell.kind == "drift":
        mean, edges = PREDICTION_MEAN + (cell.shifted if slowed else 0.0), PREDICTION_BUCKETS
        spread = PREDICTION_SPREAD ** 2
        strength = mean * (1 - mean) / spread - 1
        cdf = beta.cdf(np.array(PREDICTION_BUCKETS[:-1]), mean * strength, (1 - mean) * strength)
        split = rng.multinomial(requests, np.diff(np.concatenate([[0.0], cdf, [1.0]])))
        buckets = np.cumsum(np.cumsum(split, axis=1), axis=2)
    phases = rng.uniform(0.0, scrape_seconds, size=pods)
    times, indices = [], []
    for phase in phases:
        # A scrape at t reads what the ticks before t counted.
        at = np.arange(phase + TICK, ticks * TICK, scrape_seconds)
        times.append(at)
        indices.append(np.floor(at / TICK).astype(np.int64) - 1)
    rows = list(enumerate(indices))
    return Samples(times, [ok[pod, index].astype(float) for pod, index in rows],
                   [erred[pod, index].astype(float) for pod, index in rows],
                   None if buckets is None else [buckets[pod, index].astype(float) for pod, index in rows], edges)


def answer(reading: Reading, arms: dict[str, Samples], at: float) -> Value:
    if isinstance(reading, RequestCounts):
        return arms[reading.version].instant(at)
    if isinstance(reading, Buckets):
        window = None if reading.window is None else parse_duration(reading.window)
        return arms[reading.version].histogram(at, window)
    if isinstance(reading, ErrorRate | Quantile):
        return None  # shown in status only; no test reads it
    raise AssertionError(f"this benchmark's rollouts read no {reading!r}")


def judged(cell: Cell, looks: int, rng: np.random.Generator) -> Iterator[Result]:
    """Each look's result, judged by the operator with the status it returned the look before."""
    spec = spec_for(cell)
    analysis = spec.analysis
    assert analysis is not None
    seconds = HISTORY_SECONDS + cell.look_seconds * (looks + 2)
    ticks = int(seconds / TICK) + 1
    per_tick = cell.requests_per_second * TICK
    share = cell.weight / 100
    # A shadow step mirrors every request: the candidate answers as many as the stable.
    candidate_tick = per_tick if cell.kind == "drift" else per_tick * share
    bursts = episodes(rng, (1, ticks), cell.bursts_per_hour, cell.episode_seconds)[0]
    arms = {STABLE: scraped_arm(rng, cell.pods[0], ticks, per_tick * (1 - share), cell.stable_error,
                                cell.scrape_seconds, cell, bursts),
            CANDIDATE: scraped_arm(rng, cell.pods[1], ticks, candidate_tick, cell.candidate_error,
                                   cell.scrape_seconds, cell, bursts, slowed=True)}
    previous: api.AnalysisStatus | None = None
    started = HISTORY_SECONDS + rng.uniform(0.0, cell.look_seconds)
    for index in range(looks):
        elapsed = (index + 1) * cell.look_seconds
        at = started + elapsed
        look = Look(stable=STABLE, candidate=CANDIDATE, step_index=0, step_kind="abTest" if cell.kind == "srm"
                    else "canary", step_started_at="2026-12-06T00:00:00Z", step_elapsed_seconds=elapsed,
                    weight=0 if cell.kind == "drift" else cell.weight, now=f"look {index}",
                    interval_seconds=cell.look_seconds,
                    since_last_seconds=cell.look_seconds, step_seconds=24 * 3600.0,
                    expected_share=share if cell.kind == "srm" else None)
        wanted = needs(spec, look, previous)
        measured = Measurements({reading: answer(reading, arms, at) for reading in wanted})
        result = judge(spec, step_budget(analysis, look), look, previous, measured)
        yield result
        previous = result.state


VERDICTS = (api.Verdict.CANDIDATE_BETTER, api.Verdict.CANDIDATE_WORSE)


def run(cell: Cell, looks: int, rng: np.random.Generator) -> tuple[int | None, int | None]:
    """The looks (1-based) that decided, or None: (a Halt, a first verdict that is CandidateBetter or
    CandidateWorse) in an abTest cell, (a Fail, None) in a guardrail cell. A first verdict of
    NoDifference would have ended the step: a later one is not counted."""
    halted: int | None = None
    verdict: int | None = None
    ended = False
    for index, result in enumerate(judged(cell, looks, rng), 1):
        if cell.kind == "drift":
            # The drift guardrail holds the step rather than failing it: a breach is the decision.
            if result.state.guardrails["guarded"].outcome == api.GuardrailOutcome.BREACHED:
                return index, None
            continue
        if cell.kind != "srm":
            if result.signal.verdict == api.AnalysisVerdict.FAIL:
                return index, None
            continue
        ab = result.state.ab_test
        if not ended and ab is not None and ab.verdict != api.Verdict.INCONCLUSIVE:
            ended, verdict = True, index if ab.verdict in VERDICTS else None
        if halted is None and result.signal.verdict == api.AnalysisVerdict.HALT:
            halted = index
        if halted is not None and ended:
            break
    return halted, verdict


def refusal(cell: Cell, rng: np.random.Generator) -> str | None:
    """Why the first look refused the guardrail, or None when it did not."""
    first = next(judged(cell, 1, rng))
    status = first.state.guardrails["guarded"]
    refused = status.outcome == api.GuardrailOutcome.ERROR and status.reason.startswith("refused")
    return status.reason if refused else None


def cells(scrapes: tuple[float, ...]) -> Iterator[Cell]:
    for scrape in scrapes:
        yield Cell(f"A/A abTest, 50/50, 20 req/s, 95% success, S={scrape:g}s", "srm", scrape, 50, 20.0, 0.05, 0.05)
    for scrape in scrapes:
        yield Cell(f"A/A abTest, 50/50, 20 req/s, 95% success, S={scrape:g}s, looks every 10.1 s", "srm", scrape, 50,
                   20.0, 0.05, 0.05, look_seconds=10.1)
    for scrape in scrapes:
        yield Cell(f"A/A abTest, 50/50, 20 req/s, 50% success, S={scrape:g}s, looks every 10.1 s", "srm", scrape, 50,
                   20.0, 0.5, 0.5, look_seconds=10.1)
    for scrape in scrapes:
        yield Cell(f"A/A errorRate, 10% canary, 20 req/s, 0.5%, S={scrape:g}s", "guardrail", scrape, 10, 20.0,
                   0.005, 0.005)
    for scrape in scrapes:
        yield Cell(f"A/A errorRate, 9+1 pods, 10% canary, 20 req/s, 0.5%, pod episodes (1/h, 20 s at 20%), "
                   f"S={scrape:g}s", "guardrail", scrape, 10, 20.0, 0.005, 0.005, pods=(9, 1), episodes_per_hour=1.0)
    for scrape in scrapes:
        yield Cell(f"A/A errorRate, 2+2 pods, 50/50, 20 req/s, 0.5%, shared bursts (1/h, 20 s at 20%), "
                   f"S={scrape:g}s", "guardrail", scrape, 50, 20.0, 0.005, 0.005, pods=(2, 2), bursts_per_hour=1.0)
    for scrape in scrapes:
        yield Cell(f"A/A errorRate, 2+2 pods, 10% canary, 20 req/s, 0.5%, pods restart (1/h each), "
                   f"S={scrape:g}s", "guardrail", scrape, 10, 20.0, 0.005, 0.005, pods=(2, 2), restarts_per_hour=1.0)
    for scrape in scrapes:
        yield Cell(f"A/A latencyP99 (1x), Prometheus' default buckets, 10% canary, 20 req/s, S={scrape:g}s", "latency",
                   scrape, 10, 20.0, 0.0, 0.0)
    for scrape in scrapes:
        yield Cell(f"A/A latencyP99 (1x), 9+1 pods, 10% canary, 20 req/s, pod episodes (1/h, 20 s 4x slower), "
                   f"S={scrape:g}s", "latency", scrape, 10, 20.0, 0.0, 0.0, pods=(9, 1), episodes_per_hour=1.0,
                   episode_error=0.0, episode_slower=4.0)
    for scrape in scrapes:
        yield Cell(f"power latencyP99 (1x), default buckets, every request 2x slower, 10% canary, 20 req/s, "
                   f"S={scrape:g}s", "latency", scrape, 10, 20.0, 0.0, 0.0, slower=2.0)
    yield from drift_cells(scrapes)
    for scrape in scrapes:
        yield Cell(f"power errorRate 2x (0.5% -> 1%), 10% canary, 20 req/s, S={scrape:g}s", "guardrail", scrape, 10,
                   20.0, 0.005, 0.01)


def drift_cells(scrapes: tuple[float, ...]) -> Iterator[Cell]:
    for scrape in scrapes:
        for rate in (1.0, 20.0):
            yield Cell(f"A/A predictionPSI (max 0.5), shadow, {rate:g} req/s, S={scrape:g}s", "drift", scrape, 0, rate,
                       0.0, 0.0)
    for scrape in scrapes:
        yield Cell(f"power predictionPSI (max 0.5), candidate's mean 0.3 -> 0.5, shadow, 1 req/s, S={scrape:g}s",
                   "drift", scrape, 0, 1.0, 0.0, 0.0, shifted=0.2)


def _rate(hits: int, runs: int) -> str:
    low, high = proportion_confint(hits, runs, alpha=0.05, method="wilson")
    digits = 2 if high < 0.01 else 1
    return f"{hits}/{runs} = {hits / runs:.{digits}%} [{low:.{digits}%}, {high:.{digits}%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--looks", type=int, default=360)
    parser.add_argument("--scrape", type=float, nargs="*", default=[1.0, 15.0, 30.0, 60.0])
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--match", default="", help="run only the cells whose name this regular expression finds")
    parser.add_argument("--runs-srm", type=int, default=None,
                        help="runs of each A/A abTest cell (default --runs): 3,000 are needed to show <= 0.1%%")
    parser.add_argument("--workers", type=int, default=1, help="processes; the figures do not depend on it")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    began = time.monotonic()
    print(f"read path: {args.runs} runs a cell, {args.looks} looks, seed {args.seed}")
    unresolved = Cell("latencyP99 (1.2x) on default buckets", "latency", 15.0, 10, 20.0, 0.0, 0.0,
                      relative_to_stable=1.2, slower=2.0)
    reasons = [refusal(unresolved, rng) for _ in range(min(args.runs, 20))]
    refused = sum(reason is not None for reason in reasons)
    print(f"{unresolved.name}: refused at the first look in {refused}/{len(reasons)} runs "
          f"({'ok' if refused == len(reasons) else 'MISSED'}): {next((r for r in reasons if r), '-')}")
    with ProcessPoolExecutor(args.workers) as pool:
        for number, cell in enumerate(cells(tuple(args.scrape))):
            if args.match and not re.search(args.match, cell.name):
                continue
            runs = args.runs_srm if cell.kind == "srm" and args.runs_srm else args.runs
            # One seed per run, from the cell's place in the list: the same draws at any --workers.
            seeds = np.random.SeedSequence([args.seed, number]).spawn(runs)
            outcomes = list(pool.map(_seeded_run, [(cell, args.looks, seed) for seed in seeds], chunksize=8))
            report(cell, runs, outcomes)
    print(f"runtime {time.monotonic() - began:.0f} s")


def _seeded_run(task: tuple[Cell, int, np.random.SeedSequence]) -> tuple[int | None, int | None]:
    cell, looks, seed = task
    return run(cell, looks, np.random.default_rng(seed))


def report(cell: Cell, runs: int, outcomes: list[tuple[int | None, int | None]]) -> None:
    decided = [halted for halted, _ in outcomes]
    hits = sum(d is not None for d in decided)
    rate = _rate(hits, runs)
    if cell.kind == "srm":
        verdicts = sum(verdict is not None for _, verdict in outcomes)
        # Judged by the measured rate, like the power goals: the interval shows how sure that is.
        print(f"{cell.name}: false halts {rate} (goal <= {SRM_GOAL:.1%}: "
              f"{'ok' if hits / runs <= SRM_GOAL else 'MISSED'}); false CandidateBetter/Worse "
              f"{_rate(verdicts, runs)} (goal <= {ALPHA:.0%}: {'ok' if verdicts / runs <= ALPHA else 'MISSED'})")
    elif cell.aa:
        verdict = "ok" if hits / runs <= ALPHA else "MISSED"
        print(f"{cell.name}: false decisions {rate} (goal <= {ALPHA:.1%}: {verdict})", flush=True)
    else:
        looks = sorted(d for d in decided if d is not None)
        median = f"{np.median(looks) * cell.look_seconds / 60:.1f} min" if looks else "-"
        p80 = f"{np.percentile(looks, 80) * cell.look_seconds / 60:.1f} min" if looks else "-"
        goal = 0.9 if cell.scrape_seconds >= 60 else 0.95
        print(f"{cell.name}: caught within the hour {rate} (goal >= {goal:.0%}: "
              f"{'ok' if hits / runs >= goal else 'MISSED'}); time to catch of those caught: median {median}, "
              f"80th percentile {p80}", flush=True)


if __name__ == "__main__":
    main()
