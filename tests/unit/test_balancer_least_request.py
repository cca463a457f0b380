"""LEAST_REQUEST: power of two choices on in-flight calls; EDF on
weight / (in_flight + 1)^bias when weights differ."""

from __future__ import annotations

import itertools

from meshgrpc.proxy.balancer import least_request
from tests.unit.balancer_helpers import FakeClock, cluster, endpoints, env, shares

LR = cluster("LEAST_REQUEST")


def test_two_endpoints_always_go_to_the_less_loaded():
    clock = FakeClock()
    a, b = endpoints("a", "b", clock=clock)
    picker = least_request.build(LR, (a, b), env(clock))
    a.on_start()
    assert {picker.pick().host for _ in range(100)} == {"b"}


def test_the_most_loaded_of_many_is_never_picked():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", "d", clock=clock)
    for _ in range(5):
        eps[0].on_start()
    picker = least_request.build(LR, eps, env(clock, seed=4))
    got = shares([picker.pick() for _ in range(3000)], "abcd")
    assert got["a"] == 0 and all(abs(got[n] - 1 / 3) < 0.04 for n in "bcd")


def test_p2c_keeps_the_busiest_endpoint_near_the_mean():
    # 32 calls always open over 8 endpoints (mean 4); uniform random reaches 12.
    clock = FakeClock()
    eps = endpoints(*"abcdefgh", clock=clock)
    picker = least_request.build(LR, eps, env(clock, seed=9))
    open_calls = []
    for _ in range(32):
        ep = picker.pick()
        ep.on_start()
        open_calls.append(ep)
    for i in range(4000):  # finish the oldest call, start a new one
        open_calls.pop(0).on_finish(True, 0.001)
        ep = picker.pick()
        ep.on_start()
        open_calls.append(ep)
        assert max(e.in_flight for e in eps) <= 7, i


def test_unequal_weights_without_load_split_by_weight_and_interleave():
    clock = FakeClock()
    eps = endpoints(("a", 3), ("b", 1), clock=clock)
    picker = least_request.build(LR, eps, env(clock, seed=2))
    assert isinstance(picker, least_request.WeightedLeastRequestPicker)
    seq = [picker.pick().host for _ in range(4000)]
    assert abs(seq.count("a") / 4000 - 0.75) <= 0.01
    assert max(len(list(g)) for k, g in itertools.groupby(seq) if k == "a") <= 4


def test_unequal_weights_shift_away_from_a_loaded_endpoint():
    clock = FakeClock()
    heavy, light = endpoints(("heavy", 3), ("light", 1), clock=clock)
    for _ in range(5):
        heavy.on_start()  # effective weight 3 / 6 = 0.5 < 1
    picker = least_request.build(LR, (heavy, light), env(clock, seed=2))
    got = shares([picker.pick() for _ in range(3000)], ["heavy", "light"])
    assert 0.30 < got["heavy"] < 0.37  # 0.5 : 1


def test_bias_zero_ignores_load():
    clock = FakeClock()
    heavy, light = endpoints(("heavy", 3), ("light", 1), clock=clock)
    for _ in range(5):
        heavy.on_start()
    c = cluster("LEAST_REQUEST", least_request={"active_request_bias": 0.0})
    picker = least_request.build(c, (heavy, light), env(clock, seed=5))
    got = shares([picker.pick() for _ in range(4000)], ["heavy", "light"])
    assert abs(got["heavy"] - 0.75) < 0.01
