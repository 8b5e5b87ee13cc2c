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
