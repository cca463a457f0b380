"""WEIGHTED_ROUND_ROBIN at the picker level on a fake clock (gRFC A58): the weight
formula, the mean for endpoints without a weight, blackout, expiry, the update
period and pushback."""

from __future__ import annotations

import pytest

from meshgrpc.proxy.balancer import build_picker
from meshgrpc.proxy.balancer.weighted_round_robin import WeightedRoundRobinPicker, filled, reported_weight
from meshgrpc.proxy.orca.report import LoadReport
from tests.unit.balancer_helpers import FakeClock, cluster, endpoints, env, shares

NAMES = ("a", "b", "c")


def wrr(**tuning):
    return cluster("WEIGHTED_ROUND_ROBIN", weighted_round_robin={"blackout_period": "0s", **tuning})


def report(ep, qps: float, utilization: float, eps: float = 0.0) -> None:
    ep.on_load_report(LoadReport(application_utilization=utilization, qps=qps, eps=eps))


def picks(picker, n: int) -> list:
    return [picker.pick() for _ in range(n)]


def test_weights_are_qps_over_utilization_so_utilization_09_gets_a_third_of_03():
    clock = FakeClock()
    eps = endpoints(*NAMES, clock=clock)
    for ep, utilization in zip(eps, (0.9, 0.3, 0.3)):
        report(ep, 100.0, utilization)
    picker = build_picker(wrr(), eps, env(clock))
    assert isinstance(picker, WeightedRoundRobinPicker)
    assert picker.weights() == pytest.approx({"a:1": 100 / 0.9, "b:1": 100 / 0.3, "c:1": 100 / 0.3})
    got = shares(picks(picker, 7000), NAMES)
    assert got == pytest.approx({"a": 1 / 7, "b": 3 / 7, "c": 3 / 7}, abs=0.002)


def test_error_utilization_penalty_adds_the_error_rate_to_utilization():
    clock = FakeClock()
    eps = endpoints("a", "b", clock=clock)
    report(eps[0], 100.0, 0.5, eps=50.0)  # half its calls fail: utilization 0.5 + 0.5 x penalty
    report(eps[1], 100.0, 0.5)
    assert build_picker(wrr(), eps, env(clock)).weights() == pytest.approx({"a:1": 100.0, "b:1": 200.0})
    assert build_picker(wrr(error_utilization_penalty=0), eps, env(clock)).weights() == \
        pytest.approx({"a:1": 200.0, "b:1": 200.0})
    assert build_picker(wrr(error_utilization_penalty=3), eps, env(clock)).weights() == \
        pytest.approx({"a:1": 50.0, "b:1": 200.0})


def test_endpoint_without_a_weight_gets_the_mean_of_the_others():
    clock = FakeClock()
    eps = endpoints(*NAMES, clock=clock)
    report(eps[1], 100.0, 0.5)   # 200
    report(eps[2], 100.0, 0.25)  # 400
    picker = build_picker(wrr(), eps, env(clock))
    assert picker.weights() == pytest.approx({"a:1": 300.0, "b:1": 200.0, "c:1": 400.0})
    assert shares(picks(picker, 9000), NAMES) == pytest.approx({"a": 1 / 3, "b": 2 / 9, "c": 4 / 9}, abs=0.002)


def test_fewer_than_two_weighted_endpoints_is_round_robin():
    clock = FakeClock()
    eps = endpoints(*NAMES, clock=clock)
    report(eps[0], 100.0, 0.1)
    picker = build_picker(wrr(), eps, env(clock))
    assert set(picker.weights().values()) == {1.0}
    assert [p.host for p in picks(picker, 6)].count("a") == 2
    assert filled([0.0, 0.0]) == [1.0, 1.0]


def test_reports_without_utilization_or_qps_give_no_weight():
    clock = FakeClock()
    ep = endpoints("a", clock=clock)[0]
    spec = wrr().weighted_round_robin
    ep.on_load_report(LoadReport(qps=100.0))  # no utilization
    ep.on_load_report(LoadReport(cpu_utilization=0.5))  # no qps
    assert reported_weight(ep.stats.load, clock(), spec) == 0.0
    ep.on_load_report(LoadReport(cpu_utilization=0.5, qps=100.0))  # cpu when no application figure
    assert reported_weight(ep.stats.load, clock(), spec) == 200.0


def test_blackout_period_holds_a_weight_back_until_the_endpoint_reported_that_long():
    clock = FakeClock()
    eps = endpoints("a", "b", clock=clock)
    picker = build_picker(wrr(blackout_period="10s", weight_update_period="1s"), eps, env(clock))
    for _ in range(12):  # a report a second
        report(eps[0], 100.0, 0.25)
        report(eps[1], 100.0, 0.5)
        clock.advance(1.0)
        picker.pick()
        if clock() - 1000.0 < 10.0:
            assert picker.weights() == {"a:1": 1.0, "b:1": 1.0}, f"weighted at {clock() - 1000.0:g}s"
    assert picker.weights() == pytest.approx({"a:1": 400.0, "b:1": 200.0})


def test_weight_expires_after_the_expiration_period_and_the_blackout_applies_again():
    clock = FakeClock()
    eps = endpoints(*NAMES, clock=clock)
    spec = dict(weight_expiration_period="3s", weight_update_period="0.5s", blackout_period="2s")
    picker = build_picker(wrr(**spec), eps, env(clock))
    for _ in range(6):  # all three report every 0.5 s for 3 s: past the blackout
        for ep, utilization in zip(eps, (0.9, 0.3, 0.3)):
            report(ep, 100.0, utilization)
        clock.advance(0.5)
    picker.pick()
    assert picker.weights()["a:1"] == pytest.approx(100 / 0.9)
    # a stops reporting (its last report was 0.5 s ago); b and c go on.
    for step in range(1, 9):
        report(eps[1], 100.0, 0.3)
        report(eps[2], 100.0, 0.3)
        clock.advance(0.5)
        picker.pick()
        silent = 0.5 + step * 0.5
        expected = 100 / 0.3 if silent >= 3.0 else 100 / 0.9  # expired: the mean of b and c
        assert picker.weights()["a:1"] == pytest.approx(expected), f"{silent}s after a's last report"
    # a reports again: the blackout starts over before its weight counts.
    report(eps[0], 100.0, 0.9)
    clock.advance(1.0)
    picker.pick()
    assert picker.weights()["a:1"] == pytest.approx(100 / 0.3)
    report(eps[0], 100.0, 0.9)
    clock.advance(1.0)
    picker.pick()
    assert picker.weights()["a:1"] == pytest.approx(100 / 0.9)


def test_weights_are_recomputed_every_weight_update_period():
    clock = FakeClock()
    eps = endpoints("a", "b", clock=clock)
    report(eps[0], 100.0, 0.5)
    report(eps[1], 100.0, 0.5)
    picker = build_picker(wrr(weight_update_period="2s"), eps, env(clock))
    report(eps[0], 100.0, 0.1)  # a is suddenly five times cheaper
    clock.advance(1.9)
    picker.pick()
    assert picker.weights() == pytest.approx({"a:1": 200.0, "b:1": 200.0})
    clock.advance(0.1)
    picker.pick()
    assert picker.weights() == pytest.approx({"a:1": 1000.0, "b:1": 200.0})


def test_pushed_back_endpoint_is_passed_over_for_as_long_as_asked():
    clock = FakeClock()
    eps = endpoints(*NAMES, clock=clock)
    picker = build_picker(wrr(), eps, env(clock))
    eps[0].pushed_back(0.5)
    assert "a" not in {p.host for p in picks(picker, 30)}
    clock.advance(0.5)
    assert "a" in {p.host for p in picks(picker, 30)}


def test_schedule_interleaves_rather_than_bursts():
    clock = FakeClock()
    eps = endpoints("a", "b", clock=clock)
    report(eps[0], 300.0, 0.5)
    report(eps[1], 100.0, 0.5)
    hosts = [p.host for p in picks(build_picker(wrr(), eps, env(clock)), 400)]
    longest = max(len(run) for run in "".join(hosts).split("b"))
    assert hosts.count("a") == 300 and longest <= 3
