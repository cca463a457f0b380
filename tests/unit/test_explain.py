"""`meshgrpc explain`'s pure parts on fixed inputs: the router's explanation
agrees with route() and says why each route was or was not taken; the split's
and every picker's explanation name what their pick() would take; the cluster
lists every endpoint's score inputs and why the ones left out are left out."""

from __future__ import annotations

import random

import pytest
from google.protobuf import json_format

from meshapi.v1 import resources_pb2
from meshgrpc.proxy.explain import explain_call
from meshgrpc.proxy.state import ProxyState
from tests.support.clock import FakeClock
from tests.support.specs import cluster_set_of, route_table_of

CANARY_FIRST = {"name": "default", "virtual_hosts": [
    {"name": "api", "domains": ["api.example.com"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]},
    {"name": "all", "domains": ["*"], "routes": [
        {"name": "canary", "match": {"prefix": "/helloworld.Greeter/", "headers": [{"name": "x-canary", "exact": "true"}]},
         "route": {"cluster": "b"}},
        {"name": "default", "match": {"prefix": "/helloworld.Greeter/"},
         "route": {"weighted_clusters": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}]}},
        {"name": "exact", "match": {"path": "/other.Svc/Get"}, "route": {"cluster": "a"}},
        {"name": "bin", "match": {"prefix": "/", "headers": [{"name": "x-id-bin", "present": True}]},
         "route": {"cluster": "a"}},
    ]}]}
SAY_HELLO = b"/helloworld.Greeter/SayHello"


def table(seed: int = 1, config: dict = CANARY_FIRST):
    return route_table_of(json_format.ParseDict(config, resources_pb2.RouteConfig()), rng=random.Random(seed))


def verdicts(explained: dict) -> dict[str, str]:
    return {r["route"]: r["verdict"] for r in explained["routes"]}


def test_a_canary_call_takes_the_canary_route_and_says_why_the_default_one_was_not():
    explained = table().explain(b"localhost:15001", SAY_HELLO, [(b"x-canary", b"true")])
    assert (explained["virtual_host"], explained["route"]) == ("all", "canary")
    assert "'*' matches any host" in explained["virtual_host_why"]
    v = verdicts(explained)
    assert v["canary"] == "chosen"
    assert v["default"] == "matches too, but route canary comes first (the first match wins)"
    assert v["exact"] == "no match: path '/helloworld.Greeter/SayHello' does not equal '/other.Svc/Get'"
    assert v["bin"] == "no match: header x-id-bin ends in -bin: never matched (gRFC A28)"


def test_a_plain_call_says_which_header_the_canary_route_missed():
    for headers, got in (([], "absent"), ([(b"x-canary", b"false")], "'false'")):
        explained = table().explain(b"svc", SAY_HELLO, headers)
        assert explained["route"] == "default"
        assert verdicts(explained)["canary"] == f"no match: header x-canary: wanted exact 'true', got {got}"


def test_the_virtual_host_and_a_missing_one_are_explained():
    explained = table().explain(b"API.example.com:443", SAY_HELLO, [])
    assert (explained["virtual_host"], explained["route"]) == ("api", "api/0")
    assert explained["virtual_host_why"] == "domain 'api.example.com' matches exactly"
    no_any = {"name": "x", "virtual_hosts": [CANARY_FIRST["virtual_hosts"][0]]}
    explained = table(config=no_any).explain(b"other", SAY_HELLO, [])
    assert explained["virtual_host"] is None and explained["route"] is None
    assert explained["virtual_host_why"] == "no virtual host's domains match 'other'"


@pytest.mark.parametrize("path, headers", [
    (SAY_HELLO, []), (SAY_HELLO, [(b"x-canary", b"true")]), (b"/other.Svc/Get", []), (b"/other.Svc/Get?x=1", []),
    (b"/x", [(b"x-id-bin", b"1")]), (b"/x", []),
])
def test_explain_agrees_with_route(path, headers):
    t = table()
    entry = t.route(b"svc", path, headers)
    explained = t.explain(b"svc", path, headers)
    assert explained["route"] == (entry.name if entry else None)
    assert [r["route"] for r in explained["routes"] if r["chosen"]] == ([entry.name] if entry else [])


def test_the_split_explanation_draws_as_pick_cluster_does():
    for seed in range(20):
        explained = table(seed).route(b"svc", SAY_HELLO, []).explain_split()
        assert explained["chosen"] == table(seed).route(b"svc", SAY_HELLO, []).pick_cluster()
        assert [(c["cluster"], c["share"]) for c in explained["clusters"]] == [("a", 0.9), ("b", 0.1)]
    single = table().route(b"svc", SAY_HELLO, [(b"x-canary", b"true")]).explain_split()
    assert (single["chosen"], single["draw"]) == ("b", None)


# ---------------------------------------------------------------- pickers

def clusters(policy: str, endpoints: list[dict], seed: int = 7, clock=None, zone: str = "", **fields):
    cluster = json_format.ParseDict({"name": "c", "lb_policy": policy, **fields}, resources_pb2.Cluster())
    eps = json_format.ParseDict({"cluster": "c", "endpoints": endpoints}, resources_pb2.EndpointSet())
    return cluster_set_of({"c": cluster}, {"c": eps}, rng=random.Random(seed), clock=clock or FakeClock(),
                          local_zone=zone)


THREE = [{"address": "a:1"}, {"address": "b:1"}, {"address": "c:1", "weight": 2}]


@pytest.mark.parametrize("policy", ["ROUND_ROBIN", "LEAST_REQUEST", "PEAK_EWMA", "RANDOM", "RING_HASH"])
def test_every_picker_explains_the_pick_it_would_make(policy):
    for seed in range(10):
        explained = clusters(policy, THREE, seed).get("c").explain(b"user-1")
        assert explained["chosen"] == clusters(policy, THREE, seed).get("c").pick(b"user-1").address
        assert explained["why"]


@pytest.mark.parametrize("policy", ["ROUND_ROBIN", "LEAST_REQUEST"])
def test_explaining_does_not_move_a_cursor_or_a_schedule(policy):
    state = clusters(policy, [{"address": "a:1", "weight": 3}, {"address": "b:1"}]).get("c")
    first = state.explain()["chosen"]
    assert state.explain()["chosen"] == first == state.pick().address


def test_peak_ewma_scores_every_endpoint_and_the_slow_one_costs_most():
    clock = FakeClock()
    state = clusters("PEAK_EWMA", [{"address": "fast-1:1"}, {"address": "fast-2:1"}, {"address": "slow:1"}],
                     clock=clock, peak_ewma={"decay": "0.05s"}).get("c")
    for ep, latency in zip(state.endpoints, (0.002, 0.003, 0.027)):
        for _ in range(5):
            clock.advance(0.1)
            ep.on_start()
            ep.on_first_response(latency)
            ep.on_finish(True, latency, 0, responded=True)
    explained = state.explain()
    scores = {e["address"]: e["score"] for e in explained["endpoints"]}
    assert max(scores, key=scores.get) == "slow:1"
    rtts = {e["address"]: e["rtt_estimate_s"] for e in explained["endpoints"]}
    assert rtts["slow:1"] > 5 * max(rtts["fast-1:1"], rtts["fast-2:1"])
    assert len(explained["drawn"]) == 2 and explained["chosen"] in explained["drawn"]
    assert explained["score"].startswith("cost = (rtt estimate + penalty x recent failures) x (pending + 1) / weight")
    assert all(e["pending"] == 0 and e["in_flight"] == 0 and e["balanced_over"] for e in explained["endpoints"])


def test_endpoints_left_out_say_why():
    state = clusters("ROUND_ROBIN", [
        {"address": "a1:1", "zone": "a"}, {"address": "a2:1", "zone": "a"}, {"address": "b1:1", "zone": "b"},
        {"address": "d:1", "zone": "a", "health_status": "DRAINING"},
        {"address": "u:1", "zone": "a", "health_status": "UNHEALTHY"}], zone="a").get("c")
    left = {e["address"]: e.get("left_out") for e in state.explain()["endpoints"]}
    assert left["a1:1"] is None and left["a2:1"] is None
    assert left["b1:1"] == "not in the proxy's zone 'a', which is healthy enough to take the calls"
    assert left["d:1"] == "DRAINING: finishes its calls, gets no new ones"
    assert left["u:1"] == "UNHEALTHY by the control plane"


def test_an_ejected_endpoint_is_left_out_as_ejected():
    state = clusters("ROUND_ROBIN", THREE, outlier_detection={"consecutive_failures": 1,
                                                              "max_ejection_percent": 100}).get("c")
    ep = state.endpoints[0]
    ep.on_start()
    ep.on_finish(False, 0.01, 14)
    a = next(e for e in state.explain()["endpoints"] if e["address"] == "a:1")
    assert a["left_out"] == "ejected by outlier detection" and a["ejected_for_s"] > 0


def test_the_call_explanation_follows_route_split_and_pickers():
    routes = table(seed=3)
    b = json_format.ParseDict({"name": "b", "lb_policy": "ROUND_ROBIN"}, resources_pb2.Cluster())
    cs = cluster_set_of({"a": json_format.ParseDict({"name": "a"}, resources_pb2.Cluster()), "b": b},
                        {"a": json_format.ParseDict({"cluster": "a", "endpoints": THREE}, resources_pb2.EndpointSet())},
                        rng=random.Random(0), clock=FakeClock())
    explained = explain_call(ProxyState(routes, cs, {"t": "1"}), SAY_HELLO, b"svc", [])
    assert [c["cluster"] for c in explained["clusters"]] == ["a", "b"]   # every cluster the split can draw
    b_view = explained["clusters"][1]
    assert b_view["chosen"] is None and "no endpoint" in b_view["why"]
    chosen = explained["split"]["chosen"]
    assert explained["outcome"].startswith(f"route default -> cluster {chosen}") or \
        explained["outcome"].startswith("UNAVAILABLE")
    assert explain_call(ProxyState(None, cs), SAY_HELLO, b"svc", [])["outcome"].startswith("UNAVAILABLE")
    assert explain_call(ProxyState(routes, cs), b"/nothing", b"api.example.com", [])["routing"]["route"] == "api/0"
