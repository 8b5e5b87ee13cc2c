"""How long an abort waits for a worker when 1,000 rollouts are under analysis: the work queue alone.

The audit measured abort -> route p50 16.4 s, p99 31.1 s with 1,000 rollouts each analysed every 10 s:
the analysis ticks need 100 reconciles a second, 8 workers delivered 29, and an abort waited in the
same FIFO behind ~700 ticks. This benchmark runs the operator's own `WorkQueue` with that load
(1,000 keys each re-queued 10 s after its last look, as the engine's routine wake asks; a look holds its
worker for `--look-ms`, the audit's 8 workers / 29 per s ~ 275 ms of Prometheus round trips), adds
aborts at random moments, and prints how long each waited until a worker took it: with the urgent
lane, and with every key in one lane (the queue before it).

It measures the queue's policy only. The end-to-end figure (abort written -> route 100% stable, with
1,000 analysed rollouts on the sandbox) is issue 21's `benchmarks/scale.py` work and is not measured here.

    python -m benchmarks.queue_lanes [--rollouts 1000] [--look-ms 275] [--aborts 40]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from controller.runtime.workqueue import Lane, WorkQueue

INTERVAL_SECONDS = 10.0


async def waits(rollouts: int, look_seconds: float, aborts: int, workers: int, lanes: bool,
                seed: int) -> tuple[list[float], float]:
    """(each abort's wait for a worker in seconds, looks delivered per second)."""
    rng = random.Random(seed)
    queue: WorkQueue[str] = WorkQueue()
    asked: dict[str, float] = {}
    waited: list[float] = []
    looks = 0
    tick = Lane.ROUTINE if lanes else Lane.CHANGE

    async def handle(key: str) -> None:
        nonlocal looks
        if key in asked:
            waited.append(time.monotonic() - asked.pop(key))
            return
        await asyncio.sleep(look_seconds)  # the look's Prometheus queries
        looks += 1
        queue.add_at(key, queue.clock() + INTERVAL_SECONDS, tick)

    for number in range(rollouts):
        queue.add_at(f"rollout-{number}", queue.clock() + rng.uniform(0, INTERVAL_SECONDS), tick)
    task = asyncio.create_task(queue.run(handle, workers))
    began = time.monotonic()
    try:
        await asyncio.sleep(2 * INTERVAL_SECONDS)  # the backlog builds up
        for number in range(aborts):
            key = f"abort-{number}"
            asked[key] = time.monotonic()
            queue.add(key, Lane.DUE if lanes else tick)  # a manual action (one lane before)
            await asyncio.sleep(rng.uniform(0.2, 0.6))
        for _ in range(600):  # at most 60 s for the last aborts to be taken
            if len(waited) == aborts:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return waited, looks / (time.monotonic() - began)


def _quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--look-ms", type=float, default=275.0)
    parser.add_argument("--aborts", type=int, default=40)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    print(f"{args.rollouts} rollouts analysed every {INTERVAL_SECONDS:g} s, a look holding a worker "
          f"{args.look_ms:g} ms, {args.workers} workers, {args.aborts} aborts")
    for lanes in (False, True):
        waited, rate = asyncio.run(waits(args.rollouts, args.look_ms / 1000, args.aborts, args.workers, lanes,
                                         args.seed))
        name = "lanes" if lanes else "one lane (before)"
        if len(waited) < args.aborts:
            print(f"{name}: {args.aborts - len(waited)} of {args.aborts} aborts not taken within 60 s")
            continue
        print(f"{name}: abort waited for a worker p50 {statistics.median(waited) * 1000:.0f} ms, "
              f"p99 {_quantile(waited, 0.99) * 1000:.0f} ms, max {max(waited) * 1000:.0f} ms; "
              f"looks delivered {rate:.1f}/s of {args.rollouts / INTERVAL_SECONDS:.0f}/s needed")


if __name__ == "__main__":
    main()
