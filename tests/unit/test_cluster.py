"""Cluster sets: building from config, what survives a rebuild, which endpoints
are picked, and what /clusters sees."""

from __future__ import annotations

import random
import time

import pytest
from google.protobuf import json_format

from meshapi.v1 import resources_pb2
from tests.support.specs import cluster_set_of
from meshgrpc.errors import ConfigError
from meshgrpc.addresses import split_address
from meshgrpc.proxy.cluster import ClusterSet
from tests.unit.balancer_helpers import FakeClock


def cluster(name: str, **fields) -> resources_pb2.Cluster:
    return json_format.ParseDict({"name": name, "lb_policy": "ROUND_ROBIN", **fields}, resources_pb2.Cluster())


def endpoints(name: str, *eps: dict | str) -> resources_pb2.EndpointSet:
    items = [{"address": e} if isinstance(e, str) else e for e in eps]
    return json_format.ParseDict({"cluster": name, "endpoints": items}, resources_pb2.EndpointSet())


def build(sets: list[resources_pb2.EndpointSet], previous: ClusterSet | None = None,
          clusters: list[resources_pb2.Cluster] | None = None) -> ClusterSet:
    clusters = clusters or [cluster(s.cluster) for s in sets]
    return cluster_set_of({c.name: c for c in clusters}, {s.cluster: s for s in sets}, previous,
                            rng=random.Random(0))


def addresses_picked(state, n: int) -> list[str]:
    return [state.pick().address for _ in range(n)]


def test_endpoint_fields_from_config():
    cs = build([endpoints("api", {"address": "10.0.0.1:8080", "weight": 3, "zone": "b", "metadata": {"v": "2"}},
                          "[::1]:9090")])
    first, second = cs.get("api").endpoints
    assert (first.address, first.host, first.port, first.weight, first.zone) == ("10.0.0.1:8080", "10.0.0.1", 8080, 3, "b")
    assert first.spec.metadata == (("v", "2"),) and first.cluster == "api"
    assert (second.host, second.port, second.weight, second.zone) == ("::1", 9090, 1, "")


def test_pick_spreads_by_weight():
    cs = build([endpoints("api", {"address": "a:1", "weight": 3}, "b:1")])
    picked = addresses_picked(cs.get("api"), 400)
    assert picked.count("a:1") == 300


def test_unhealthy_and_draining_endpoints_are_listed_but_never_picked():
    cs = build([endpoints("api", "a:1", {"address": "b:1", "health_status": "UNHEALTHY"},
                          {"address": "c:1", "health_status": "DRAINING"}, {"address": "d:1", "health_status": "HEALTHY"})])
    state = cs.get("api")
    assert set(addresses_picked(state, 100)) == {"a:1", "d:1"}
    assert [e.address for e in state.usable] == ["a:1", "d:1"]
    assert cs.addresses() == {"a:1", "b:1", "c:1", "d:1"}  # draining ones still need their pools
    health = {e["address"]: e["health"] for e in cs.describe()["clusters"][0]["endpoints"]}
    assert health == {"a:1": "HEALTHY", "b:1": "UNHEALTHY", "c:1": "DRAINING", "d:1": "HEALTHY"}


def test_no_usable_endpoint_picks_none_without_panic_mode():
    cs = build([endpoints("down", {"address": "a:1", "health_status": "UNHEALTHY"}),
                endpoints("draining", {"address": "a:1", "health_status": "DRAINING"})],
               clusters=[cluster("down", panic_threshold_percent=0), cluster("empty"), cluster("draining")])
    assert cs.get("down").pick() is None
    assert cs.get("draining").pick() is None  # draining endpoints get no new calls, panic or not
    assert cs.get("empty").pick() is None and cs.get("empty").endpoints == ()
    assert cs.get("missing") is None


def test_no_usable_endpoint_in_panic_mode_picks_the_unhealthy_ones():
    cs = build([endpoints("down", {"address": "a:1", "health_status": "UNHEALTHY"})])
    state = cs.get("down")
    assert state.pick().address == "a:1" and state.panic and state.usable == ()


def test_counters_survive_a_rebuild_for_the_same_cluster_and_address():
    first = build([endpoints("api", "a:1", "b:1"), endpoints("other", "a:1")])
    a = first.get("api").pick()
    a.on_start()
    a.on_start()
    a.on_finish(ok=False, latency_s=0.25)
    second = build([endpoints("api", {"address": a.address, "weight": 5}, "c:1"), endpoints("other", "a:1")],
                   previous=first)
    carried = next(e for e in second.get("api").endpoints if e.address == a.address)
    assert carried is not a and carried.weight == 5  # new config...
    assert (carried.in_flight, carried.total, carried.failures, carried.last_latency_s) == (1, 2, 1, 0.25)  # ...same counters
    a.on_finish(ok=True, latency_s=0.5)  # a call started before the swap ends after it
    assert (carried.in_flight, carried.total, carried.failures) == (0, 2, 1)
    assert second.get("other").endpoints[0].total == 0  # same address, other cluster: its own counters
    assert first.get("api").endpoints[0].weight == 1  # the previous set was not touched


def test_removed_then_readded_endpoint_starts_fresh():
    first = build([endpoints("api", "a:1", "b:1")])
    first.get("api").endpoints[0].on_start()
    second = build([endpoints("api", "b:1")], previous=first)
    third = build([endpoints("api", "a:1", "b:1")], previous=second)
    assert third.get("api").endpoints[0].total == 0


def test_unchanged_cluster_keeps_its_state_and_round_robin_position():
    first = build([endpoints("api", "a:1", "b:1", "c:1"), endpoints("web", "w:1")])
    api = first.get("api")
    before = api.pick().address
    second = build([endpoints("api", "a:1", "b:1", "c:1"), endpoints("web", "w:1", "w:2")], previous=first)
    assert second.get("api") is api
    assert second.get("api").pick().address != before  # the rotation continues
    assert second.get("web") is not first.get("web")


def test_bad_address_fails_the_build_and_names_the_field():
    first = build([endpoints("api", "a:1")])
    with pytest.raises(ConfigError) as err:
        build([endpoints("api", "a:1", "no-port", "b:99999")], previous=first)
    assert [e.path for e in err.value.errors] == ["endpoints[api].endpoints[1].address",
                                                   "endpoints[api].endpoints[2].address"]
    assert first.get("api").pick().address == "a:1"


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:50051", ("127.0.0.1", 50051)),
    ("greeter.svc:80", ("greeter.svc", 80)),
    ("[2001:db8::1]:443", ("2001:db8::1", 443)),
])
def test_split_address(address, expected):
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["host", "host:", ":80", "host:0", "host:x", "[::1]", "[::1]80"])
def test_split_address_rejects(address):
    with pytest.raises(ValueError):
        split_address(address)


def test_describe_and_repr_show_state():
    cs = build([endpoints("api", {"address": "a:1", "weight": 2, "zone": "z1"})])
    ep = cs.get("api").pick()
    ep.on_start()
    described = cs.describe()
    assert described["clusters"][0]["endpoints"][0].pop("rtt_estimate_s") == pytest.approx(0.030, rel=1e-3)
    spec = described["clusters"][0].pop("spec")  # effective config, defaults filled in
    assert (spec["connect_timeout"], spec["circuit_breaker"]["max_requests"], spec["retry_budget"]["ttl"]) == \
        (1.0, 1024, 10.0)
    assert described == {"clusters": [{
        "name": "api", "lb_policy": "ROUND_ROBIN", "picker": "CyclePicker", "usable": 1,
        "balanced_over": 1, "panic": False, "local_zone_only": False,
        "in_flight": {"requests": 0, "pending": 0, "retries": 0},
        "endpoints": [{"address": "a:1", "weight": 2, "zone": "z1", "health": "HEALTHY",
                       "health_check": None, "ejected_until": None, "ejected_for_s": None,
                       "times_ejected": 0, "unreachable_for_s": None,
                       "in_flight": 1, "pending": 1, "calls": 1, "failures": 0, "last_latency_s": None,
                       "recent_failures": 0.0, "pushed_back_for_s": None, "load_report": None,
                       "metadata": {}}],
    }]}
    assert cs.snapshot().keys() == cs.describe().keys()
    assert repr(cs) == "<ClusterSet [api:1/1]>"
    assert "usable=1" in repr(cs.get("api"))
    assert "in_flight=1" in repr(ep)


def test_pick_cost(capsys):
    """Not an assertion: prints the cost of ClusterState.pick() plus the relay's
    on_start/on_finish bookkeeping."""
    cs = build([endpoints("api", *[{"address": f"10.0.0.{i}:80", "weight": 1 + i % 3} for i in range(50)])])
    state, n = cs.get("api"), 200_000
    with capsys.disabled():
        start = time.perf_counter()
        for _ in range(n):
            state.pick()
        pick = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for _ in range(n):
            ep = state.pick()
            ep.on_start()
            ep.on_finish(True, 0.001)
        full = (time.perf_counter() - start) / n * 1e6
        print(f"\nClusterState.pick(): {pick:.3f} µs; with on_start/on_finish: {full:.3f} µs")


def test_pick_avoiding_never_returns_an_endpoint_already_tried_when_there_is_another():
    # A retry after an endpoint never received the call (connection refused) must
    # not land on it again: ring hash would send the same key there every time.
    cs = build([endpoints("api", "a:1", "b:1", "c:1")], clusters=[cluster("api", lb_policy="RING_HASH")])
    state = cs.get("api")
    for key in (b"k%d" % i for i in range(50)):
        first = state.pick(key)
        assert state.pick(key) is first
        assert state.pick_avoiding([first], key) not in (first, None)
    single = build([endpoints("one", "a:1")]).get("one")
    only = single.pick()
    assert single.pick_avoiding([only]) is only  # nowhere else to go


def test_listen_addresses_may_ask_for_any_free_port():
    assert split_address("127.0.0.1:0", listen=True) == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match="port in 1-65535"):
        split_address("127.0.0.1:0")


def test_an_endpoint_refusing_connections_leaves_the_picker_until_its_back_off_ends():
    clock = FakeClock()
    cs = cluster_set_of({"api": cluster("api")}, {"api": endpoints("api", "a:1", "b:1")},
                        rng=random.Random(0), clock=clock)
    state = cs.get("api")
    a = next(e for e in state.endpoints if e.address == "a:1")
    a.unreachable(clock() + 2.0)
    assert set(addresses_picked(state, 20)) == {"b:1"}
    assert state.describe()["endpoints"][0]["unreachable_for_s"] == 2.0
    clock.advance(2.0)
    cs.tick()
    assert set(addresses_picked(state, 20)) == {"a:1", "b:1"}
