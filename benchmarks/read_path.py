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
- A/A sample ratio: an abTest at 50/50 with identical arms; any Halt is false (goal: <= 0.1%);
- A/A guardrail: an errorRate guardrail at a 10% canary with identical arms; any rollback is false
  (goal: <= alpha);
- A/A guardrail with 9 stable pods and 1 candidate pod, each pod erring in episodes (one an hour,
  20 s at 20%): errors that cluster by pod (goal: <= alpha);
- power: the same guardrail with the candidate's errors doubled (0.5% -> 1%, 20 req/s); caught
  within the hour (goal: >= 95% at S <= 30 s, >= 90% at S = 60 s).

    python -m benchmarks.read_path                 # 40 runs a cell, a few minutes
    python -m benchmarks.read_path --runs 400      # tighter figures
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from statsmodels.stats.proportion import proportion_confint

from controller import api
from controller.analysis.budget import step_budget
from controller.analysis.judge import judge
from controller.analysis.readings import ErrorRate, Look, Measurements, Outcomes, Reading, RequestCounts, Value, needs

TICK = 0.1
ALPHA = 0.05
SRM_GOAL = 0.001
STABLE, CANDIDATE = "stable", "candidate"
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Cell:
    name: str
    kind: str  # "srm" (an abTest at `weight`) or "guardrail" (an errorRate guardrail at a canary `weight`)
    scrape_seconds: float
    weight: int
    requests_per_second: float
    stable_error: float
    candidate_error: float
    look_seconds: float = 10.0
    pods: tuple[int, int] = (1, 1)
    # Pod-level error episodes: each pod, independently, starts one at this rate (per hour), and
    # errs at `episode_error` for `episode_seconds` (a pod that hiccups).
    episodes_per_hour: float = 0.0
    episode_seconds: float = 20.0
    episode_error: float = 0.2
    # Shared bursts: every pod of both arms errs at `episode_error` for `episode_seconds`, this often
    # (per hour): a dependency both versions call goes down.
    bursts_per_hour: float = 0.0
    # Pods restart this often (per hour each): their counters start again from zero.
    restarts_per_hour: float = 0.0

    @property
    def aa(self) -> bool:
        return self.stable_error == self.candidate_error


def spec_for(cell: Cell) -> api.ModelRolloutSpec:
    step: dict[str, object]
    if cell.kind == "srm":
        step = {"abTest": {"weight": cell.weight, "metric": "success", "maxDuration": "24h"}}
        guardrails: list[dict[str, object]] = []
    else:
        step = {"canary": {"weight": cell.weight, "duration": "24h"}}
        guardrails = [{"name": "errors", "template": "errorRate", "relativeToStable": 1.0}]
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


class ScrapedArm:
    """One arm's pods: cumulative ok/error counters per tick, and the phase each pod is scraped at."""

    def __init__(self, rng: np.random.Generator, pods: int, ticks: int, requests_per_tick: float, error: float,
                 scrape_seconds: float, cell: Cell, bursts: BoolArray) -> None:
        requests = rng.poisson(requests_per_tick / pods, size=(pods, ticks))
        rates = np.where(bursts[None, :], max(error, cell.episode_error), np.full((pods, ticks), error))
        if cell.episodes_per_hour > 0:
            inside = episodes(rng, (pods, ticks), cell.episodes_per_hour, cell.episode_seconds)
            rates = np.where(inside, max(error, cell.episode_error), rates)
        errors = rng.binomial(requests, rates)
        self.ok: IntArray = np.cumsum(requests - errors, axis=1)
        self.error: IntArray = np.cumsum(errors, axis=1)
        if cell.restarts_per_hour > 0:
            resets = rng.random((pods, ticks)) < cell.restarts_per_hour / 3600 * TICK
            self.ok, self.error = restarted(self.ok, resets), restarted(self.error, resets)
        self.scrape_seconds = scrape_seconds
        self.phases = rng.uniform(0.0, scrape_seconds, size=pods)

    def instant(self, at: float) -> Outcomes:
        """`sum(counter)` at `at`: each pod's last sample before it (0 before its first scrape)."""
        scraped = at - (at - self.phases) % self.scrape_seconds
        ticks = np.floor(scraped / TICK).astype(np.int64) - 1
        seen = ticks >= 0
        rows = np.arange(len(ticks))[seen]
        return Outcomes(ok=float(self.ok[rows, ticks[seen]].sum()), error=float(self.error[rows, ticks[seen]].sum()),
                        sampled_at=float(scraped[seen].mean()) if seen.any() else None)


def answer(reading: Reading, arms: dict[str, ScrapedArm], at: float) -> Value:
    if isinstance(reading, RequestCounts):
        return arms[reading.version].instant(at)
    if isinstance(reading, ErrorRate):
        return None  # shown in status only; no test reads it
    raise AssertionError(f"this benchmark's rollouts read no {reading!r}")


def run(cell: Cell, looks: int, rng: np.random.Generator) -> int | None:
    """The look (1-based) that decided, or None: a Halt in an srm cell, a Fail in a guardrail cell."""
    spec = spec_for(cell)
    analysis = spec.analysis
    assert analysis is not None
    seconds = cell.look_seconds * (looks + 2)
    ticks = int(seconds / TICK) + 1
    per_tick = cell.requests_per_second * TICK
    share = cell.weight / 100
    bursts = episodes(rng, (1, ticks), cell.bursts_per_hour, cell.episode_seconds)[0]
    arms = {STABLE: ScrapedArm(rng, cell.pods[0], ticks, per_tick * (1 - share), cell.stable_error,
                               cell.scrape_seconds, cell, bursts),
            CANDIDATE: ScrapedArm(rng, cell.pods[1], ticks, per_tick * share, cell.candidate_error,
                                  cell.scrape_seconds, cell, bursts)}
    previous: api.AnalysisStatus | None = None
    started = rng.uniform(0.0, cell.look_seconds)
    for index in range(looks):
        elapsed = (index + 1) * cell.look_seconds
        at = started + elapsed
        look = Look(stable=STABLE, candidate=CANDIDATE, step_index=0, step_kind="abTest" if cell.kind == "srm"
                    else "canary", step_started_at="2026-12-06T00:00:00Z", step_elapsed_seconds=elapsed,
                    weight=cell.weight, now=f"look {index}", interval_seconds=cell.look_seconds,
                    since_last_seconds=cell.look_seconds, step_seconds=24 * 3600.0,
                    expected_share=share if cell.kind == "srm" else None)
        wanted = needs(spec, look, previous)
        measured = Measurements({reading: answer(reading, arms, at) for reading in wanted})
        result = judge(spec, step_budget(analysis, look), look, previous, measured)
        decided = (result.signal.verdict == api.AnalysisVerdict.HALT if cell.kind == "srm"
                   else result.signal.verdict == api.AnalysisVerdict.FAIL)
        if decided:
            return index + 1
        previous = result.state
    return None


def cells(scrapes: tuple[float, ...]) -> Iterator[Cell]:
    for scrape in scrapes:
        yield Cell(f"A/A sample ratio, 50/50, 20 req/s, S={scrape:g}s", "srm", scrape, 50, 20.0, 0.05, 0.05)
    for scrape in scrapes:
        yield Cell(f"A/A sample ratio, 50/50, 20 req/s, S={scrape:g}s, looks every 10.1 s", "srm", scrape, 50, 20.0,
                   0.05, 0.05, look_seconds=10.1)
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
        yield Cell(f"power errorRate 2x (0.5% -> 1%), 10% canary, 20 req/s, S={scrape:g}s", "guardrail", scrape, 10,
                   20.0, 0.005, 0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--looks", type=int, default=360)
    parser.add_argument("--scrape", type=float, nargs="*", default=[1.0, 15.0, 30.0, 60.0])
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    began = time.monotonic()
    print(f"read path: {args.runs} runs a cell, {args.looks} looks, seed {args.seed}")
    for cell in cells(tuple(args.scrape)):
        decided = [run(cell, args.looks, rng) for _ in range(args.runs)]
        hits = sum(d is not None for d in decided)
        low, high = proportion_confint(hits, args.runs, alpha=0.05, method="wilson")
        rate = f"{hits}/{args.runs} = {hits / args.runs:.1%} [{low:.1%}, {high:.1%}]"
        if cell.aa:
            goal = SRM_GOAL if cell.kind == "srm" else ALPHA
            verdict = "ok" if low <= goal else "MISSED"
            print(f"{cell.name}: false decisions {rate} (goal <= {goal:.1%}: {verdict})")
        else:
            looks = sorted(d for d in decided if d is not None)
            median = f"{np.median(looks) * cell.look_seconds / 60:.1f} min" if looks else "-"
            p80 = f"{np.percentile(looks, 80) * cell.look_seconds / 60:.1f} min" if looks else "-"
            goal = 0.9 if cell.scrape_seconds >= 60 else 0.95
            print(f"{cell.name}: caught within the hour {rate} (goal >= {goal:.0%}: "
                  f"{'ok' if hits / args.runs >= goal else 'MISSED'}); time to catch of those caught: median {median}, "
                  f"80th percentile {p80}")
    print(f"runtime {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
