"""The reconcile loop's handling of conflicts, failures and our own writes, without a cluster."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.kube.cache import Cache
from controller.reconciler import Behind, Outcome, StaleSnapshot
from controller.runtime.reconcile_loop import ReconcileLoop
from controller.runtime.workqueue import Lane

KEY = ("ns", "scorer")


def body(version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "scorer", "resourceVersion": version, "uid": "u1"},
            "spec": {}, "status": {}}


class Store(list[Any]):
    pass


def make_loop(cached: dict[str, Any] | None) -> ReconcileLoop:
    rollouts = {KEY: Store([cached])} if cached else {}
    cache = Cache(rollouts=rollouts, rollouts_by_route={}, deployments={}, services={}, unschedulable={},
                  routes={})
    loop = ReconcileLoop(api_client=None, cache=cache, pool=None)  # type: ignore[arg-type]
    return loop


@pytest.fixture
def run_in_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    async def direct(self: ReconcileLoop, fn: Any, *args: Any) -> Any:
        return fn(*args)
    monkeypatch.setattr(ReconcileLoop, "_in_thread", direct)


async def test_a_conflict_rereads_and_recomputes(run_in_thread: None) -> None:
    loop = make_loop(body("1"))
    seen: list[str] = []

    def reconcile(_key: Any, snapshot: dict[str, Any], _: threading.Event) -> Outcome:
        seen.append(snapshot["metadata"]["resourceVersion"])
        if len(seen) == 1:
            raise StaleSnapshot("changed")
        return Outcome(None)

    loop._reconcile = reconcile  # type: ignore[method-assign,assignment]
    loop._read_fresh = lambda key: body("2")  # type: ignore[method-assign]
    await loop.handle(KEY)
    assert seen == ["1", "2"], "the second attempt works on the fresh object"
    assert loop.queue.failures(KEY) == 0


async def test_any_failure_is_reported_and_retried_with_backoff(run_in_thread: None) -> None:
    loop = make_loop(body("1"))
    reported: list[tuple[str, str]] = []

    def reconcile(_key: Any, snapshot: dict[str, Any], _: threading.Event) -> Outcome:
        raise ValueError("a hand-edited timestamp")

    loop._reconcile = reconcile  # type: ignore[method-assign,assignment]
    loop._report = lambda snapshot, reason, detail: reported.append((reason, detail))  # type: ignore[method-assign,assignment]
    await loop.handle(KEY)
    await loop.handle(KEY)
    assert reported[0][0] == "ReconcileError" and "hand-edited" in reported[0][1]
    assert loop.queue.failures(KEY) == 2
    assert loop.queue.pending_deadline(KEY) is not None, "retried later, with backoff"


async def test_the_echo_of_our_own_write_wakes_nothing() -> None:
    loop = make_loop(body("1"))
    loop.own_writes.record("ModelRollout", "ns", "scorer", "7")
    loop.notify(KEY, ("ModelRollout", "ns", "scorer", "7"))
    assert len(loop.queue) == 0
    loop.notify(KEY, ("ModelRollout", "ns", "scorer", "8"))
    assert len(loop.queue) == 1, "someone else's change does"


async def test_a_reconcile_never_acts_on_a_snapshot_older_than_its_own_write(run_in_thread: None) -> None:
    loop = make_loop(body("1"))
    snapshots: list[str] = []

    def reconcile(_key: Any, snapshot: dict[str, Any], _: threading.Event) -> Outcome:
        snapshots.append(snapshot["metadata"]["resourceVersion"])
        return Outcome(None, written=body("5"), superseded={"1", "3"})

    loop._reconcile = reconcile  # type: ignore[method-assign,assignment]
    await loop.handle(KEY)
    await loop.handle(KEY)  # the cache still shows version 1
    assert snapshots == ["1", "5"]


@pytest.mark.usefixtures("run_in_thread")
async def test_a_status_held_for_its_checkpoint_is_the_next_reconciles_and_yields_to_another_writer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cached = body("1")
    loop = make_loop(cached)
    seen: list[tuple[dict[str, Any], Behind | None]] = []
    held = {"phase": "Progressing", "analysis": {"looks": 4}}

    def reconcile(_ctx: Any, snapshot: dict[str, Any], behind: Behind | None = None) -> Outcome:
        seen.append((snapshot["status"], behind))
        return Outcome(None, deferred=held)

    monkeypatch.setattr("controller.runtime.reconcile_loop.reconcile_object", reconcile)
    await loop.handle(KEY)
    await loop.handle(KEY)
    assert seen[0] == ({}, None)
    assert seen[1][0] == held and seen[1][1] is not None and seen[1][1].stored == {}, \
        "the next reconcile goes on from the status in memory, knowing what is stored"
    since = seen[1][1].since
    await loop.handle(KEY)
    assert seen[2][1] is not None and seen[2][1].since == since, "behind since the first status held"
    cached["status"] = {"phase": "Paused"}  # Another writer (a failure report, a person) changed it.
    await loop.handle(KEY)
    assert seen[3] == ({"phase": "Paused"}, None), "what is stored wins over what was held"


@pytest.mark.parametrize(("status", "lane"), [
    ({"state": "Running", "candidateRevision": "c1", "candidateReady": False}, Lane.CHANGE),
    ({"state": "Deploying"}, Lane.CHANGE),
    ({"state": "Running", "candidateRevision": "c1", "candidateReady": True}, Lane.ROUTINE),
    ({"state": "Stable"}, Lane.ROUTINE),
])
async def test_a_deployment_moving_waits_behind_edits_unless_the_rollout_waits_for_it(
        status: dict[str, Any], lane: Lane) -> None:
    """A candidate becoming ready starts a step, a route write: it goes ahead of analysis ticks."""
    loop = make_loop({**body("1"), "status": status})
    loop.workload_moved(KEY, ("Deployment", "ns", "scorer-c1", "3"))
    assert loop.queue._queued == {KEY: lane}
