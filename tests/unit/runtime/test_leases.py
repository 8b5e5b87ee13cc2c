"""Shard assignment is stable and spread; the fair share balances replicas."""

from __future__ import annotations

from collections import Counter

from controller.runtime.leases import fair_share, shard_of


def test_a_rollout_always_lands_in_the_same_shard() -> None:
    assert shard_of("ns", "scorer", 8) == shard_of("ns", "scorer", 8)
    assert shard_of("ns", "scorer", 1) == 0


def test_shards_are_spread_evenly() -> None:
    counts = Counter(shard_of("team", f"model-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(900 <= count <= 1100 for count in counts.values()), counts


def test_the_fair_share_covers_every_shard() -> None:
    assert fair_share(4, 2) == 2
    assert fair_share(5, 2) == 3
    assert fair_share(3, 0) == 3
    for shards in range(1, 10):
        for members in range(1, 6):
            assert fair_share(shards, members) * members >= shards


def test_a_static_shard_competes_for_its_own_lease_only() -> None:
    from controller.runtime.leases import LeaseKeeper
    from controller.runtime.shard_labels import selector, unlabelled

    keeper = LeaseKeeper(api_client=None, namespace="ops", identity="a", shards=4, only=2)  # type: ignore[arg-type]
    assert not keeper.owns("team", "scorer")
    keeper.held.add(2)
    # Whatever the hash says: the watch shows this replica only the rollouts labelled with its shard.
    assert all(keeper.owns("team", f"model-{i}") for i in range(20))
    assert selector(2, 4) == "rollouts.mlops.dev/shard=2-of-4"
    # `notin` also matches a rollout without the label (new, or from before sharding), and one
    # labelled for another shard count: a new count moves every rollout, and strands none.
    assert unlabelled(3) == "rollouts.mlops.dev/shard notin (0-of-3,1-of-3,2-of-3)"


def test_a_standby_tries_again_when_the_lease_it_saw_expires_not_at_its_next_round() -> None:
    import time

    from controller.runtime.leases import EXPIRY_MARGIN_SECONDS, LeaseKeeper, _Seen

    keeper = LeaseKeeper(api_client=None, namespace="ops", identity="b")  # type: ignore[arg-type]
    assert keeper._until_an_expiry() == keeper.retry_seconds + EXPIRY_MARGIN_SECONDS, "nothing seen: the round"
    keeper._seen["modelrollout"] = _Seen("a", "t1", time.monotonic() - keeper.lease_seconds + 0.5)
    assert 0.4 < keeper._until_an_expiry() <= 0.5 + EXPIRY_MARGIN_SECONDS
    keeper._seen["modelrollout"] = _Seen("a", "t1", time.monotonic() - keeper.lease_seconds - 5)
    assert keeper._until_an_expiry() > 1.0, "expired already: the round takes it"
