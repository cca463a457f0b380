"""RANDOM: weighted, seeded, stateless."""

from __future__ import annotations

from meshgrpc.proxy.balancer import random_pick
from tests.unit.balancer_helpers import FakeClock, cluster, endpoints, env, shares

RANDOM = cluster("RANDOM")


def test_equal_weights_are_uniform():
    clock = FakeClock()
    picker = random_pick.build(RANDOM, endpoints("a", "b", "c", "d", clock=clock), env(clock, seed=1))
    got = shares([picker.pick() for _ in range(8000)], "abcd")
    assert all(abs(v - 0.25) < 0.02 for v in got.values())


def test_weights_are_followed():
    clock = FakeClock()
    picker = random_pick.build(RANDOM, endpoints(("a", 3), ("b", 1), ("c", 0), clock=clock), env(clock, seed=2))
    got = shares([picker.pick() for _ in range(8000)], "abc")
    assert abs(got["a"] - 0.75) < 0.02 and got["c"] == 0


def test_same_seed_same_sequence():
    clock = FakeClock()
    eps = endpoints(("a", 2), "b", "c", clock=clock)
    def run(seed):
        picker = random_pick.build(RANDOM, eps, env(clock, seed=seed))
        return [picker.pick().host for _ in range(50)]
    assert run(8) == run(8) and run(8) != run(9)
