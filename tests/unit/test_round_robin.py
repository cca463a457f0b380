"""Smooth weighted round robin: proportions, spacing, the precomputed cycle and
the live EDF heap agreeing, and the injected start point."""

from __future__ import annotations

import itertools
import random
import time

from meshapi.v1 import resources_pb2
from meshgrpc.config import specs
from meshgrpc.proxy.balancer import PickerEnv, build_picker, round_robin


class Ep:
    """Just what the picker reads of an EndpointState."""

    def __init__(self, name: str, weight: int) -> None:
        self.address, self.weight = name, weight

    def __repr__(self) -> str:
        return self.address


RR = specs.ClusterSpec(name="c", lb_policy="ROUND_ROBIN")


def picks(picker, n: int) -> list[str]:
    return [picker.pick().address for _ in range(n)]


def longest_run(seq: list[str], name: str) -> int:
    return max((len(list(g)) for k, g in itertools.groupby(seq) if k == name), default=0)


def test_weights_3_to_1_interleave():
    seq = picks(round_robin.build(RR, (Ep("a", 3), Ep("b", 1)), PickerEnv(rng=random.Random(5))), 4000)
    assert abs(seq.count("a") / len(seq) - 0.75) <= 0.01
    assert longest_run(seq, "a") <= 3
    assert longest_run(seq, "b") == 1


def test_one_cycle_is_a_a_b_a():
    assert [e.address for e in round_robin.schedule((Ep("a", 3), Ep("b", 1)), 4)] == ["a", "a", "b", "a"]


def test_equal_weights_alternate():
    seq = picks(round_robin.build(RR, (Ep("a", 1), Ep("b", 1), Ep("c", 1)), PickerEnv(rng=random.Random(1))), 30)
    assert all(len(set(seq[i:i + 3])) == 3 for i in range(28))  # plain rotation
    assert {n: seq.count(n) for n in "abc"} == {"a": 10, "b": 10, "c": 10}


def test_every_cycle_gives_exact_shares():
    rng = random.Random(11)
    for _ in range(50):
        eps = tuple(Ep(f"e{i}", rng.randint(1, 12)) for i in range(rng.randint(1, 6)))
        cycle = sum(e.weight for e in eps)  # a multiple of the true cycle: shares still exact
        seq = picks(round_robin.build(RR, eps, PickerEnv(rng=rng)), cycle * 3)
        assert {e.address: seq.count(e.address) for e in eps} == {e.address: e.weight * 3 for e in eps}


def test_heavy_endpoint_is_spread_evenly():
    # 10:1:1 — equal-weight endpoints are staggered, so "h" runs at most 10 / 2, never 10.
    seq = picks(round_robin.build(RR, (Ep("h", 10), Ep("x", 1), Ep("y", 1)), PickerEnv(rng=random.Random(2))), 1200)
    assert longest_run(seq, "h") == 5
    assert all(seq[i:i + 2] not in (["x", "y"], ["y", "x"]) for i in range(len(seq) - 1))


def test_long_cycles_run_the_heap_live_with_the_same_schedule():
    eps = (Ep("a", 9973), Ep("b", 9967), Ep("c", 5))  # cycle 19945 > MAX_CYCLE
    picker = round_robin.build(RR, eps, PickerEnv(rng=random.Random(3)))
    assert isinstance(picker, round_robin.EdfPicker)
    live = round_robin.EdfPicker(eps)
    assert [live.pick() for _ in range(5000)] == list(round_robin.schedule(eps, 5000))
    seq = picks(picker, 19945)
    assert seq.count("c") == 5 and abs(seq.count("a") - 9973) <= 1


def test_short_cycles_are_precomputed():
    picker = round_robin.build(RR, (Ep("a", 3), Ep("b", 1)), PickerEnv())
    assert isinstance(picker, round_robin.CyclePicker)
    assert "cycle=4" in repr(picker)


def test_start_point_comes_from_the_injected_rng():
    eps = tuple(Ep(f"e{i}", 1) for i in range(16))
    def first(seed):
        return picks(round_robin.build(RR, eps, PickerEnv(rng=random.Random(seed))), 3)
    assert first(9) == first(9)
    assert len({tuple(first(s)) for s in range(10)}) > 1


def test_every_policy_has_a_picker():
    eps = (Ep("a", 1),)
    for policy in resources_pb2.Cluster.LbPolicy.values():
        cluster = specs.cluster_spec(resources_pb2.Cluster(name="c", lb_policy=policy))
        assert build_picker(cluster, eps, PickerEnv()).pick().address == "a"
    assert build_picker(RR, (), PickerEnv()).pick() is None


def test_pick_cost(capsys):
    """Not an assertion: prints the cost of one pick at 10, 100 and 1,000 endpoints."""
    n = 200_000
    with capsys.disabled():
        for size, weights in [(10, [1]), (100, [1]), (1000, [1]), (100, [1, 2, 3, 5]), (1000, [97, 89, 83])]:
            eps = tuple(Ep(f"e{i}", weights[i % len(weights)]) for i in range(size))
            picker = round_robin.build(RR, eps, PickerEnv(rng=random.Random(0)))
            start = time.perf_counter()
            for _ in range(n):
                picker.pick()
            cost = (time.perf_counter() - start) / n * 1e6
            print(f"\nround_robin pick, {size} endpoints, weights {weights}: {cost:.3f} µs ({type(picker).__name__})")
