"""Outlier detection: the pure decisions, then the cluster acting on them."""

from __future__ import annotations

import dataclasses

import asyncio
import random

import pytest
from google.protobuf import json_format

from meshapi.v1 import resources_pb2
from meshgrpc.config import specs
from meshgrpc.proxy.cluster import ClusterSet
from tests.support.specs import cluster_set_of
from meshgrpc.proxy.outlier import Decision, OutlierDetector, OutlierTally, OutlierTicker
from tests.unit.balancer_helpers import FakeClock

UNAVAILABLE, NOT_FOUND, OK = 14, 5, 0


def detector_of(fields: dict) -> OutlierDetector:
    return OutlierDetector.of(specs.outlier_spec(json_format.ParseDict(fields, resources_pb2.OutlierDetection())))


def tallies(n: int) -> dict[str, OutlierTally]:
    return {f"e{i}": OutlierTally() for i in range(n)}


def fail(d: OutlierDetector, t: OutlierTally, times: int, status: int = UNAVAILABLE) -> list[bool]:
    return [d.record(t, False, status) for _ in range(times)]


# -- decisions --------------------------------------------------------------------------

def test_consecutive_failures_reach_the_limit_once():
    d = OutlierDetector(consecutive_failures=3)
    t = OutlierTally()
    assert fail(d, t, 3) == [False, False, True]
    assert d.record(t, True, OK) is False and t.consecutive == 0
    assert fail(d, t, 2) == [False, False]


def test_only_configured_codes_count():
    d = OutlierDetector(consecutive_failures=2)
    t = OutlierTally()
    assert fail(d, t, 5, NOT_FOUND) == [False] * 5 and t.failures == 0
    assert d.record(t, False, None) is False and d.record(t, False, None) is True  # no status, not ok
    custom = detector_of({"consecutive_failures": 2, "failure_status_codes": [5]})
    t = OutlierTally()
    assert fail(custom, t, 2, UNAVAILABLE) == [False, False] and fail(custom, t, 2, NOT_FOUND) == [False, True]


def test_ejection_time_grows_with_each_ejection_and_is_capped():
    d = OutlierDetector(consecutive_failures=1, base_ejection_time=30, max_ejection_time=100, interval=10)
    ts = tallies(2)
    untils = []
    for round_ in range(5):
        fail(d, ts["e0"], 1)
        decision = d.on_consecutive_failures(ts, "e0", now=1000.0)
        untils.append(decision.eject[0].until - 1000.0)
        decision.apply(ts)
        Decision(uneject=("e0",)).apply(ts)
    assert untils == [30, 60, 90, 100, 100]


def test_multiplier_decays_while_an_endpoint_stays_in():
    d = OutlierDetector(consecutive_failures=1)
    ts = tallies(3)
    ts["e0"].times_ejected = 2
    decision = d.sweep(ts, now=0.0)
    assert decision.forgive == ("e0",)
    decision.apply(ts)
    assert ts["e0"].times_ejected == 1


def test_max_ejection_percent_bounds_ejections_but_one_is_always_allowed():
    d = OutlierDetector(consecutive_failures=1, max_ejection_percent=50)
    ts = tallies(4)
    for name in ts:
        fail(d, ts[name], 1)
    out = []
    for name in ts:
        decision = d.on_consecutive_failures(ts, name, now=0.0)
        decision.apply(ts)
        out += [e.address for e in decision.eject]
    assert out == ["e0", "e1"]  # 2 of 4 = 50%
    tiny = OutlierDetector(consecutive_failures=1, max_ejection_percent=10)
    ts = tallies(3)
    fail(tiny, ts["e1"], 1)
    assert [e.address for e in tiny.on_consecutive_failures(ts, "e1", 0.0).eject] == ["e1"]  # 33% > 10%, but the first


def test_sweep_unejects_when_time_is_up():
    d = OutlierDetector(consecutive_failures=1, base_ejection_time=30)
    ts = tallies(2)
    fail(d, ts["e0"], 1)
    d.on_consecutive_failures(ts, "e0", now=100.0).apply(ts)
    assert d.expired(ts, now=129.9) == Decision()
    assert d.expired(ts, now=130.0).uneject == ("e0",)
    d.sweep(ts, now=130.0).apply(ts)
    assert ts["e0"].ejected_until is None and ts["e0"].times_ejected == 1


def test_success_rate_outlier_is_ejected():
    d = OutlierDetector(consecutive_failures=0, stdev_factor=1.9, success_rate_volume=100)
    ts = tallies(6)
    for name, t in ts.items():
        t.calls = 200
        t.failures = 60 if name == "e3" else 2
    decision = d.sweep(ts, now=0.0)
    assert [e.address for e in decision.eject] == ["e3"] and decision.eject[0].reason == "success rate"
    decision.apply(ts)
    assert all(t.calls == 0 for t in ts.values())  # next interval starts fresh


def test_success_rate_needs_volume_and_enough_hosts():
    d = OutlierDetector(consecutive_failures=0)
    ts = tallies(6)
    for name, t in ts.items():
        t.calls, t.failures = (99, 90) if name == "e3" else (200, 0)
    assert d.sweep(ts, 0.0).eject == ()  # e3 under the request volume
    few = tallies(4)
    for name, t in few.items():
        t.calls, t.failures = (200, 150) if name == "e0" else (200, 0)
    assert d.sweep(few, 0.0).eject == ()  # fewer than 5 hosts qualify


def test_failure_percentage():
    d = OutlierDetector(consecutive_failures=0, stdev_factor=0, failure_percentage_threshold=30,
                        max_ejection_percent=100)
    ts = tallies(5)
    for name, t in ts.items():
        t.calls, t.failures = 100, {"e0": 30, "e1": 29}.get(name, 0)
    assert [e.address for e in d.sweep(ts, 0.0).eject] == ["e0"]


def test_defaults_from_an_empty_config():
    d = detector_of({})
    assert (d.consecutive_failures, d.interval, d.base_ejection_time, d.max_ejection_time,
            d.max_ejection_percent, sorted(d.failure_codes), d.stdev_factor,
            d.success_rate_volume, d.failure_percentage_threshold) == \
        (5, 10.0, 30.0, 300.0, 10, [2, 13, 14, 15], 1.9, 100, None)


# -- the cluster acting on them -------------------------------------------------------

def cluster_set(clock: FakeClock, n: int = 4, **od) -> ClusterSet:
    c = json_format.ParseDict({"name": "api", "lb_policy": "ROUND_ROBIN", "outlier_detection": {
        "consecutive_failures": 5, "interval": "10s", "base_ejection_time": "30s", "max_ejection_percent": 50, **od}},
        resources_pb2.Cluster())
    s = resources_pb2.EndpointSet(cluster="api", endpoints=[
        resources_pb2.Endpoint(address=f"e{i}:1") for i in range(n)])
    return cluster_set_of({"api": c}, {"api": s}, rng=random.Random(0), clock=clock)


def call(cs: ClusterSet, address: str, status: int) -> None:
    ep = next(e for e in cs.get("api").endpoints if e.address == address)
    ep.on_start()
    ep.on_first_response(0.001)
    ep.on_finish(status == OK, 0.001, status, responded=True)


def picked(cs: ClusterSet) -> set[str]:
    return {cs.get("api").pick().address for _ in range(100)}


def test_endpoint_failing_every_call_is_ejected_at_once_then_returns():
    clock = FakeClock()
    cs = cluster_set(clock)
    for _ in range(4):
        call(cs, "e1:1", UNAVAILABLE)
    assert "e1:1" in picked(cs)
    call(cs, "e1:1", UNAVAILABLE)  # the 5th in a row: ejected from the call path
    assert picked(cs) == {"e0:1", "e2:1", "e3:1"}
    row = cs.describe()["clusters"][0]["endpoints"][1]
    assert row["ejected_for_s"] == 30.0 and row["times_ejected"] == 1 and row["failures"] == 5
    clock.advance(29.0)
    cs.tick()
    assert "e1:1" not in picked(cs)
    clock.advance(1.0)
    cs.tick()  # un-ejected on its timer
    assert "e1:1" in picked(cs)
    for _ in range(5):
        call(cs, "e1:1", UNAVAILABLE)
    assert cs.describe()["clusters"][0]["endpoints"][1]["ejected_for_s"] == 60.0  # second time: twice as long


def test_cluster_never_ejects_more_than_max_percent():
    clock = FakeClock()
    cs = cluster_set(clock)
    for address in ("e0:1", "e1:1", "e2:1"):
        for _ in range(5):
            call(cs, address, UNAVAILABLE)
    assert picked(cs) == {"e2:1", "e3:1"}


def test_application_errors_do_not_eject():
    clock = FakeClock()
    cs = cluster_set(clock)
    for _ in range(20):
        call(cs, "e0:1", NOT_FOUND)
    assert "e0:1" in picked(cs)


def test_ejection_survives_a_config_rebuild():
    clock = FakeClock()
    cs = cluster_set(clock)
    for _ in range(5):
        call(cs, "e0:1", UNAVAILABLE)
    old = cs.get("api")
    rebuilt = ClusterSet.build({"api": dataclasses.replace(old.spec, lb_policy="RANDOM")},
                               {"api": old.endpoint_specs}, cs, rng=random.Random(0), clock=clock)
    assert "e0:1" not in picked(rebuilt)


def test_sweep_runs_on_the_interval_through_tick():
    clock = FakeClock()
    cs = cluster_set(clock, n=6, consecutive_failures=0)
    for address in [f"e{i}:1" for i in range(6)]:
        for k in range(120):
            call(cs, address, UNAVAILABLE if address == "e4:1" and k % 2 else OK)
    clock.advance(9.9)
    cs.tick()
    assert "e4:1" in picked(cs)
    clock.advance(0.1)
    cs.tick()
    assert "e4:1" not in picked(cs)


@pytest.mark.parametrize("status, counted", [(UNAVAILABLE, True), (OK, False)])
def test_record_needs_the_status_code(status, counted):
    clock = FakeClock()
    cs = cluster_set(clock)
    call(cs, "e0:1", status)
    assert cs.get("api").endpoints[0].stats.outlier.consecutive == int(counted)


def test_ticker_ticks_until_stopped():
    async def scenario():
        ticks = asyncio.Queue()
        ticker = OutlierTicker(lambda: ticks.put_nowait(1), period=0.01)
        ticker.start()
        for _ in range(3):
            await asyncio.wait_for(ticks.get(), 5.0)
        await ticker.stop()
        count = ticks.qsize()
        await asyncio.sleep(0.05)  # not synchronisation: checking that nothing more happens
        assert ticks.qsize() == count and "running=False" in repr(ticker)
    asyncio.run(scenario())


def test_config_fields_reach_the_decisions():
    d = detector_of({"consecutive_failures": 0, "success_rate_stdev_factor": 1000, "success_rate_request_volume": 20,
                     "failure_percentage_threshold": 40, "max_ejection_time": "60s", "base_ejection_time": "45s"})
    assert (d.stdev_factor, d.success_rate_volume, d.failure_percentage_threshold) == (1.0, 20, 40)
    assert (d.base_ejection_time, d.max_ejection_time) == (45.0, 60.0)
    ts = {f"e{i}": OutlierTally() for i in range(6)}
    for name, t in ts.items():  # 20 calls each meets the volume; e0's 45% failures cross both rules
        t.calls, t.failures = 20, {"e0": 9}.get(name, 0)
    decision = d.sweep(ts, 0.0)
    assert [e.address for e in decision.eject] == ["e0"] and decision.eject[0].until == 45.0
