"""RING_HASH: same key, same endpoint; removing one of N remaps about 1/N;
weights; stable hashes; keyless calls spread."""

from __future__ import annotations

from meshgrpc.proxy.balancer import ring_hash
from tests.unit.balancer_helpers import FakeClock, cluster, endpoints, env, shares

RING = cluster("RING_HASH")
KEYS = [f"user-{i}".encode() for i in range(1000)]


def owners(picker) -> list[str]:
    return [picker.pick(k).host for k in KEYS]


def test_same_key_same_endpoint_across_builds_and_seeds():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", "d", clock=clock)
    first = owners(ring_hash.build(RING, eps, env(clock, seed=1)))
    again = ring_hash.build(RING, endpoints("a", "b", "c", "d", clock=clock), env(clock, seed=2))
    assert owners(again) == first
    assert set(first) == {"a", "b", "c", "d"}


def test_removing_one_of_four_remaps_only_its_keys():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", "d", clock=clock)
    before = owners(ring_hash.build(RING, eps, env(clock)))
    after = owners(ring_hash.build(RING, eps[:1] + eps[2:], env(clock)))  # "b" removed
    moved = [k for k, (x, y) in enumerate(zip(before, after)) if x != y]
    assert len(moved) <= 350  # the bound: 35% of 1,000
    assert all(before[k] == "b" for k in moved)  # survivors keep every key they had
    assert 0.18 < before.count("b") / 1000 < 0.32


def test_adding_an_endpoint_takes_about_a_fair_share():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", "d", clock=clock)
    before = owners(ring_hash.build(RING, eps[:3], env(clock)))
    after = owners(ring_hash.build(RING, eps, env(clock)))
    moved = [k for k, (x, y) in enumerate(zip(before, after)) if x != y]
    assert all(after[k] == "d" for k in moved) and 180 < len(moved) < 320


def test_ring_has_at_least_the_minimum_entries_and_follows_weights():
    clock = FakeClock()
    picker = ring_hash.build(RING, endpoints(("a", 2), "b", clock=clock), env(clock))
    assert picker.size >= 1024
    got = shares([picker.pick(f"k{i}".encode()) for i in range(6000)], ["a", "b"])
    assert abs(got["a"] - 2 / 3) < 0.05
    big = ring_hash.build(cluster("RING_HASH", ring_hash={"minimum_ring_size": 40000}),
                          endpoints("a", "b", "c", clock=clock), env(clock))
    assert big.size >= 40000


def test_many_endpoints_keep_the_ring_bounded():
    clock = FakeClock()
    picker = ring_hash.build(RING, endpoints(*[f"e{i}" for i in range(1000)], clock=clock), env(clock))
    assert 1024 <= picker.size <= 2 * ring_hash.RING_CAP
    huge = ring_hash.points_per_endpoint([10000, 9999, 1] * 100, 1024)
    assert sum(huge) <= 2 * ring_hash.RING_CAP and min(huge) >= 1


def test_key_hash_is_stable_across_processes():
    # A fixed value (BLAKE2b-64, little-endian), never Python's per-process salted
    # hash(): every proxy must send the same key to the same endpoint.
    assert ring_hash.key_hash(b"user-42") == 0xA6EFE67B4DCAA06F


def test_no_key_picks_at_random_by_weight():
    clock = FakeClock()
    picker = ring_hash.build(RING, endpoints(("a", 3), "b", clock=clock), env(clock, seed=3))
    got = shares([picker.pick(None) for _ in range(8000)], ["a", "b"])
    assert abs(got["a"] - 0.75) < 0.03
