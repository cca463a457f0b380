"""Failure-aware costs in PEAK_EWMA and LEAST_REQUEST, on a fake clock and seeded
rng: an endpoint that answered UNAVAILABLE or RESOURCE_EXHAUSTED carries a
decaying penalty, and server pushback takes an endpoint out of the choice for as
long as it asked (grpc-retry-pushback-ms, Retry-After), at most max_pushback."""

from __future__ import annotations

import email.utils
import math

import pytest

from meshgrpc.proxy import penalty
from meshgrpc.proxy.balancer import build_picker
from meshgrpc.proxy.pushback import pushback_seconds, retry_after
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.config import specs
from tests.unit.balancer_helpers import FakeClock, cluster, endpoint, env

UNAVAILABLE, RESOURCE_EXHAUSTED, INTERNAL = 14, 8, 13


def endpoints_with(spec, *names: str, clock: FakeClock, weights=None):
    weights = weights or [1] * len(names)
    eps = tuple(endpoint(n, w, clock=clock) for n, w in zip(names, weights))
    for e in eps:  # as ClusterSet builds them: the cluster's failure penalty
        e._penalty = spec.failure_penalty
    return eps


def run_calls(picker, clock: FakeClock, n: int, outcome) -> list[str]:
    """`n` calls one after another, 1 ms apart; `outcome(host)` -> (latency, grpc status)."""
    hosts = []
    for _ in range(n):
        ep = picker.pick()
        hosts.append(ep.host)
        latency, status = outcome(ep.host)
        ep.on_start()
        ep.on_first_response(latency)
        ep.on_finish(status == 0, latency, status, responded=True)
        clock.advance(0.001)
    return hosts


def fails_fast(host: str):
    return (0.0001, UNAVAILABLE) if host == "bad" else (0.005, 0)


# ---------------------------------------------------------------- the penalty

def test_penalty_counts_each_failure_and_decays_with_its_time_constant():
    count = penalty.add_failure(0.0, 0.0, 10.0, 5.0)
    count = penalty.add_failure(count, 10.0, 10.0, 5.0)
    assert count == 2.0
    assert penalty.current(count, 10.0, 15.0, 5.0) == pytest.approx(2 / math.e)
    assert penalty.penalized(UNAVAILABLE) and penalty.penalized(RESOURCE_EXHAUSTED)
    assert not penalty.penalized(INTERNAL) and not penalty.penalized(None)


def test_only_unavailable_and_resource_exhausted_add_to_the_penalty():
    clock = FakeClock()
    spec = cluster("PEAK_EWMA")
    ep = endpoints_with(spec, "a", clock=clock)[0]
    for status in (INTERNAL, 0, UNAVAILABLE, RESOURCE_EXHAUSTED):
        ep.on_start()
        ep.on_finish(status == 0, 0.001, status, responded=True)
    assert ep.recent_failures() == 2.0
    assert ep.describe()["recent_failures"] == 2.0


@pytest.mark.parametrize("policy", ["PEAK_EWMA", "LEAST_REQUEST"])
def test_endpoint_failing_fast_loses_its_traffic_to_the_penalty(policy):
    clock = FakeClock()
    with_penalty, without = cluster(policy), cluster(policy, failure_penalty={"penalty": "0s"})
    shares = {}
    for name, spec in (("on", with_penalty), ("off", without)):
        eps = endpoints_with(spec, "good", "bad", clock=clock)
        picker = build_picker(spec, eps, env(clock, seed=1))
        hosts = run_calls(picker, clock, 2000, fails_fast)
        shares[name] = hosts[1000:].count("bad") / 1000
    assert shares["on"] < 0.05, shares
    if policy == "PEAK_EWMA":
        assert shares["off"] > 0.5, shares  # a fast failure looks like a fast endpoint


def test_penalty_decays_and_the_endpoint_comes_back_into_contention():
    clock = FakeClock()
    spec = cluster("PEAK_EWMA", failure_penalty={"penalty": "0.1s", "decay": "2s"})
    eps = endpoints_with(spec, "good", "bad", clock=clock)
    picker = build_picker(spec, eps, env(clock))
    assert run_calls(picker, clock, 500, fails_fast).count("bad") <= 5
    clock.advance(20.0)  # ten time constants without a failure
    assert eps[1].recent_failures() < 1e-4
    hosts = run_calls(picker, clock, 200, lambda host: (0.005, 0))
    assert hosts.count("bad") >= 20 and "bad" in hosts[-20:]  # in rotation again, to stay


def test_penalty_decay_is_read_from_config():
    clock = FakeClock()
    short = endpoints_with(cluster("LEAST_REQUEST", failure_penalty={"decay": "1s"}), "a", clock=clock)[0]
    long = endpoints_with(cluster("LEAST_REQUEST", failure_penalty={"decay": "100s"}), "b", clock=clock)[0]
    for ep in (short, long):
        ep.on_start()
        ep.on_finish(False, 0.001, UNAVAILABLE, responded=True)
    clock.advance(1.0)
    assert short.recent_failures() == pytest.approx(1 / math.e)
    assert long.recent_failures() == pytest.approx(math.exp(-0.01))


def test_least_request_multiplies_the_load_by_one_plus_recent_failures():
    clock = FakeClock()
    spec = cluster("LEAST_REQUEST")
    eps = endpoints_with(spec, "a", "b", clock=clock)
    picker = build_picker(spec, eps, env(clock))
    eps[0].on_start()
    eps[0].on_finish(False, 0.001, RESOURCE_EXHAUSTED, responded=True)
    eps[1].on_start()  # b: 1 in flight -> load 2; a: 0 in flight, 1 failure -> load 2
    assert picker.explain().scores == {"a:1": 2.0, "b:1": 2.0}


# ---------------------------------------------------------------- pushback

@pytest.mark.parametrize("policy,weights", [("PEAK_EWMA", None), ("LEAST_REQUEST", None),
                                            ("LEAST_REQUEST", [1, 2, 3])])
def test_pushback_of_500ms_keeps_the_endpoint_out_for_500ms(policy, weights):
    clock = FakeClock()
    spec = cluster(policy)
    eps = endpoints_with(spec, "a", "b", "c", clock=clock, weights=weights)
    picker = build_picker(spec, eps, env(clock))
    eps[0].pushed_back(0.5)
    start = clock()
    picked_at = []
    while clock() - start < 0.7:  # a call every millisecond
        if picker.pick().host == "a":
            picked_at.append(clock() - start)
        clock.advance(0.001)
    assert picked_at, "a never came back"
    assert picked_at[0] == pytest.approx(0.5, abs=0.01)  # none before 500 ms, and soon after
    assert eps[0].describe(start + 0.2)["pushed_back_for_s"] == pytest.approx(0.3)


def test_pushback_is_capped_by_max_pushback_and_zero_ignores_it():
    clock = FakeClock()
    capped = endpoints_with(cluster("PEAK_EWMA", failure_penalty={"max_pushback": "2s"}), "a", clock=clock)[0]
    ignoring = endpoints_with(cluster("PEAK_EWMA", failure_penalty={"max_pushback": "0s"}), "b", clock=clock)[0]
    default = endpoints_with(cluster("PEAK_EWMA"), "c", clock=clock)[0]
    for ep in (capped, ignoring, default):
        ep.pushed_back(3600.0)
    assert capped.stats.pushed_back_until == clock() + 2.0
    assert ignoring.stats.pushed_back_until == 0.0
    assert default.stats.pushed_back_until == clock() + 10.0


def test_a_shorter_pushback_does_not_cut_a_longer_one():
    clock = FakeClock()
    ep = endpoints_with(cluster("PEAK_EWMA"), "a", clock=clock)[0]
    ep.pushed_back(2.0)
    ep.pushed_back(0.1)
    assert ep.stats.pushed_back_until == clock() + 2.0


def test_when_every_endpoint_is_pushed_back_the_one_back_first_is_picked():
    clock = FakeClock()
    spec = cluster("PEAK_EWMA")
    eps = endpoints_with(spec, "a", "b", clock=clock)
    eps[0].pushed_back(1.0)
    eps[1].pushed_back(0.5)
    assert {build_picker(spec, eps, env(clock, seed)).pick().host for seed in range(10)} == {"b"}


def test_pushback_and_penalty_show_in_clusters_and_explain():
    clock = FakeClock()
    spec = specs.ClusterSpec(name="api")
    cs = ClusterSet.build({"api": spec}, {"api": (specs.EndpointSpec("a:1", "a", 1),)}, clock=clock)
    ep = cs.get("api").endpoint("a:1")
    ep.pushed_back(0.25)
    ep.on_start()
    ep.on_finish(False, 0.001, UNAVAILABLE, responded=True)
    row = cs.describe()["clusters"][0]["endpoints"][0]
    assert (row["pushed_back_for_s"], row["recent_failures"]) == (0.25, 1.0)
    explained = cs.get("api").explain()["endpoints"][0]
    assert (explained["pushed_back_for_s"], explained["recent_failures"]) == (0.25, 1.0)


# ---------------------------------------------------------------- what the relay reads

def test_grpc_pushback_in_milliseconds_and_negative_is_none():
    assert pushback_seconds([(b"grpc-status", b"14"), (b"grpc-retry-pushback-ms", b"500")], grpc=True) == 0.5
    assert pushback_seconds([(b"grpc-retry-pushback-ms", b"-1")], grpc=True) is None  # "do not retry" only
    assert pushback_seconds([(b"grpc-retry-pushback-ms", b"soon")], grpc=True) is None
    assert pushback_seconds([(b"grpc-status", b"14")], grpc=True) is None


def test_retry_after_as_seconds_or_an_http_date():
    now = 1_700_000_000.0
    assert pushback_seconds([(b":status", b"503"), (b"retry-after", b"3")], grpc=False, now_wall=now) == 3.0
    date = email.utils.formatdate(now + 7.0, usegmt=True).encode()
    assert retry_after(date, now) == pytest.approx(7.0)
    assert retry_after(email.utils.formatdate(now - 7.0, usegmt=True).encode(), now) == 0.0
    assert retry_after(b"tomorrow", now) is None
    assert pushback_seconds([(b"retry-after", b"3")], grpc=True) is None  # gRPC reads its own header only
