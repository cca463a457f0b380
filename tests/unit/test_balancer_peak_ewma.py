"""PEAK_EWMA at the picker level, on simulated time: a slow endpoint loses its
traffic and wins it back once fast again; pending calls and weights count."""

from __future__ import annotations

import heapq
import math

import pytest

from meshapi.v1 import resources_pb2

from meshgrpc.config import specs
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.proxy.balancer import build_picker, peak_ewma
from meshgrpc.proxy.balancer.single import SinglePicker
from tests.unit.balancer_helpers import FakeClock, cluster, endpoints, env

PEAK = cluster("PEAK_EWMA")


class Simulation:
    """`callers` closed-loop callers: each sends a call, waits its endpoint's
    latency, sends the next. Completions run in time order on the fake clock; the
    relay's hooks are called as the relay would."""

    def __init__(self, picker, latency: dict[str, float], clock: FakeClock, callers: int) -> None:
        self.picker, self.latency, self.clock = picker, latency, clock
        self.events: list[tuple[float, int, object]] = []
        self.seq = 0
        self.picked: list[str] = []
        for _ in range(callers):
            self._send()

    def _send(self) -> None:
        ep = self.picker.pick()
        ep.on_start()
        self.picked.append(ep.host)
        self.seq += 1
        heapq.heappush(self.events, (self.clock() + self.latency[ep.host], self.seq, ep))

    def run_calls(self, n: int) -> list[str]:
        start = len(self.picked)
        while len(self.picked) < start + n:
            self._step()
        return self.picked[start:start + n]

    def run_for(self, seconds: float) -> list[str]:
        start, end = len(self.picked), self.clock() + seconds
        while self.events[0][0] <= end:
            self._step()
        return self.picked[start:]

    def _step(self) -> None:
        t, _, ep = heapq.heappop(self.events)
        self.clock.now = t
        rtt = self.latency[ep.host]
        ep.on_first_response(rtt)
        ep.on_finish(True, rtt, 0, responded=True)
        self._send()


def share(picks: list[str], name: str) -> float:
    return picks.count(name) / len(picks)


def recovers_within(sim: Simulation, latency: dict[str, float], seconds: int) -> None:
    latency["slow"] = 0.002  # fast again
    window = []
    for _ in range(seconds):  # in 1 s windows of simulated time
        window = sim.run_for(1.0)
        if share(window, "slow") > 0.20:
            return
    raise AssertionError(f"slow endpoint still at {share(window, 'slow'):.1%} after {seconds} s")


def test_slow_endpoint_loses_traffic_and_wins_it_back_after_recovery():
    # The scenario: 3 endpoints, one 25 ms slower, 8 callers, 200 warm-up calls.
    clock = FakeClock()
    eps = endpoints("a", "b", "slow", clock=clock)
    latency = {"a": 0.002, "b": 0.002, "slow": 0.027}
    sim = Simulation(peak_ewma.build(PEAK, eps, env(clock, seed=7)), latency, clock, callers=8)
    sim.run_calls(200)
    assert share(sim.run_calls(2000), "slow") <= 0.10
    recovers_within(sim, latency, 30)


def test_long_slow_endpoint_is_probed_rarely_and_still_recovers_within_30s():
    # After a minute the estimates have converged (fast ~2 ms, slow well above):
    # the slow one is only probed as its estimate decays, and must still come back.
    clock = FakeClock()
    eps = endpoints("a", "b", "slow", clock=clock)
    latency = {"a": 0.002, "b": 0.002, "slow": 0.027}
    sim = Simulation(peak_ewma.build(PEAK, eps, env(clock, seed=1)), latency, clock, callers=8)
    sim.run_for(60.0)
    assert eps[0].rtt_estimate() < 0.0025 < 0.010 < eps[2].rtt_estimate()
    assert share(sim.run_calls(2000), "slow") <= 0.02
    recovers_within(sim, latency, 30)


def test_equal_endpoints_share_equally():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", clock=clock)
    sim = Simulation(peak_ewma.build(PEAK, eps, env(clock, seed=3)), {"a": 0.005, "b": 0.005, "c": 0.005},
                     clock, callers=8)
    picks = sim.run_calls(6000)
    assert all(abs(share(picks, n) - 1 / 3) < 0.05 for n in "abc")


def test_pending_calls_make_an_endpoint_look_more_expensive():
    clock = FakeClock()
    a, b = endpoints("a", "b", clock=clock)
    picker = peak_ewma.build(PEAK, (a, b), env(clock))
    for _ in range(3):
        a.on_start()  # three calls waiting on a, none answered
    assert {picker.pick().host for _ in range(50)} == {"b"}
    for _ in range(3):
        a.on_first_response(0.030)  # answered (same rtt): long streams no longer count
    assert {picker.pick().host for _ in range(200)} == {"a", "b"}


def test_call_finishing_without_a_response_ends_its_pending_time():
    clock = FakeClock()
    (a,) = endpoints("a", clock=clock)
    a.on_start()
    a.on_start()
    a.on_finish(False, 0.0001, 14)  # connection refused: no response
    a.on_finish(True, 0.050)  # the relay's two-argument form: the whole call is the sample
    assert a.stats.pending == 0 and a.stats.in_flight == 0
    assert a.rtt_estimate() == 0.050
    a.on_start()
    clock.advance(1.0)
    a.on_first_response(0.001)
    a.on_finish(True, 5.0, 0, responded=True)  # a 5 s stream: its length is not a round trip
    assert a.stats.pending == 0 and a.rtt_estimate() < 0.050


def test_weight_scales_the_cost():
    clock = FakeClock()
    heavy, light = endpoints(("heavy", 4), ("light", 1), clock=clock)
    picker = peak_ewma.build(PEAK, (heavy, light), env(clock))
    heavy.on_start()
    heavy.on_start()  # 3 x rtt / 4 < 1 x rtt / 1
    assert {picker.pick().host for _ in range(50)} == {"heavy"}


def test_new_endpoint_starts_at_default_rtt_from_config():
    c = cluster("PEAK_EWMA", peak_ewma={"decay": "5s", "default_rtt": "0.100s"})
    assert (c.peak_ewma.default_rtt, c.peak_ewma.decay) == (0.100, 5.0)
    assert (PEAK.peak_ewma.default_rtt, PEAK.peak_ewma.decay) == (0.030, 10.0)
    clock = FakeClock()
    endpoint_set = resources_pb2.EndpointSet(cluster="c", endpoints=[resources_pb2.Endpoint(address="a:1")])
    ep = ClusterSet.build({"c": c}, {"c": specs.endpoint_specs(endpoint_set)}, clock=clock).get("c").endpoints[0]
    assert ep.rtt_estimate() == 0.100
    clock.advance(5.0)
    assert ep.rtt_estimate() == pytest.approx(0.100 / math.e)  # idle decay with the configured constant


def test_default_policy_is_peak_ewma_and_one_endpoint_needs_no_draw():
    clock = FakeClock()
    unset = cluster("LB_POLICY_UNSPECIFIED")
    assert type(build_picker(unset, endpoints("a", "b", clock=clock), env(clock))).__name__ == "PeakEwmaPicker"
    assert isinstance(build_picker(unset, endpoints("a", clock=clock), env(clock)), SinglePicker)
