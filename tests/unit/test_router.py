"""The compiled routing table: virtual hosts, route matching order, header
matchers, weighted clusters and the route's action fields."""

from __future__ import annotations

import random
import re
import time

import pytest
from google.protobuf import json_format

from meshapi.v1 import resources_pb2
from tests.support.specs import route_table_of
from meshgrpc.proxy.router import RouteTable


def table(virtual_hosts: list[dict], seed: int = 1) -> RouteTable:
    config = json_format.ParseDict({"name": "default", "virtual_hosts": virtual_hosts}, resources_pb2.RouteConfig())
    return route_table_of(config, rng=random.Random(seed))


def routes_table(routes: list[dict], **kw) -> RouteTable:
    """One catch-all virtual host with these routes; route i sends to cluster "c<i>"."""
    for i, r in enumerate(routes):
        r.setdefault("route", {"cluster": f"c{i}"})
    return table([{"name": "vh", "domains": ["*"], "routes": routes}], **kw)


def cluster_of(t: RouteTable, path: bytes, headers=(), authority: bytes = b"svc") -> str | None:
    entry = t.route(authority, path, list(headers))
    return entry.pick_cluster() if entry is not None else None


# -- virtual hosts -------------------------------------------------------------

def hosts_table() -> RouteTable:
    def vh(name, *domains):
        return {"name": name, "domains": list(domains), "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name}}]}
    return table([
        vh("any", "*"),
        vh("prefix-short", "api.*"),
        vh("prefix-long", "api.internal.*"),
        vh("suffix-short", "*.com"),
        vh("suffix-long", "*.example.com"),
        vh("exact", "api.example.com"),
    ])


@pytest.mark.parametrize("authority, expected", [
    (b"api.example.com", "exact"),
    (b"API.Example.COM", "exact"),            # case-insensitive
    (b"api.example.com:8443", "exact"),       # port stripped
    (b"www.example.com", "suffix-long"),      # longest suffix before shorter
    (b"shop.com", "suffix-short"),
    (b"api.internal.example.org", "prefix-long"),
    (b"api.foo.org:80", "prefix-short"),      # suffix rules tried before prefix rules
    (b"api.foo.com", "suffix-short"),         # ...so a suffix match beats a prefix match
    (b"localhost:15001", "any"),
    (b"[::1]:15001", "any"),
])
def test_virtual_host_precedence(authority, expected):
    assert hosts_table().virtual_host(authority) == expected
    assert cluster_of(hosts_table(), b"/x/y", authority=authority) == expected


def test_wildcards_never_match_the_empty_string():
    t = table([
        {"name": "suffix", "domains": ["*.example.com"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "s"}}]},
        {"name": "prefix", "domains": ["example.*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "p"}}]},
    ])
    assert t.virtual_host(b"example.com") == "prefix"  # ".example.com" needs a label before it
    assert t.virtual_host(b"a.example.com") == "suffix"
    assert t.virtual_host(b"example.") is None  # "example." needs something after it
    assert t.virtual_host(b"example.org") == "prefix"


def test_no_virtual_host_means_no_route():
    t = table([{"name": "only", "domains": ["a.test"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}])
    assert t.route(b"b.test", b"/x/y", []) is None
    assert t.route(b"A.TEST:1", b"/x/y", []).pick_cluster() == "a"


def test_ipv6_authority_keeps_brackets_and_drops_port():
    t = table([{"name": "v6", "domains": ["[::1]"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "v6"}}]}])
    assert t.virtual_host(b"[::1]:8080") == "v6"
    assert t.virtual_host(b"[::1]") == "v6"
    assert t.virtual_host(b"[::2]:8080") is None


def test_authority_memo_is_bounded_and_changes_no_answer():
    t = hosts_table()
    for i in range(3000):
        assert t.virtual_host(f"h{i}.example.com".encode()) == "suffix-long"
        assert cluster_of(t, b"/a/b", authority=f"h{i}.example.com".encode()) == "suffix-long"
    assert len(t._memo) <= 1024


# -- paths ---------------------------------------------------------------------

def test_path_exact_prefix_and_regex():
    t = routes_table([
        {"match": {"path": "/helloworld.Greeter/SayHello"}},
        {"match": {"regex": r"/helloworld\.Greeter/Say[A-Z]\w*"}},
        {"match": {"prefix": "/helloworld."}},
    ])
    assert cluster_of(t, b"/helloworld.Greeter/SayHello") == "c0"
    assert cluster_of(t, b"/helloworld.Greeter/SayBye") == "c1"
    assert cluster_of(t, b"/helloworld.Greeter/sayBye") == "c2"  # regex is a fullmatch, case-sensitive
    assert cluster_of(t, b"/helloworld.Greeter/SayHello/extra") == "c2"  # \w stops at "/"
    assert cluster_of(t, b"/other.Svc/M") is None


def test_regex_must_match_the_whole_path():
    t = routes_table([{"match": {"regex": "/a.*b"}}])
    assert cluster_of(t, b"/a123b") == "c0"
    assert cluster_of(t, b"/a123bc") is None
    assert cluster_of(t, b"x/a123b") is None


def test_regexes_are_re2_on_the_raw_bytes():
    t = routes_table([
        {"match": {"regex": "/r/(a+)+"}},
        {"match": {"prefix": "/", "headers": [{"name": "x-n", "regex": r"\d+"}]}},
        {"match": {"regex": "/caf./.*"}},
    ])
    started = time.perf_counter()
    assert cluster_of(t, b"/r/" + b"a" * 5_000 + b"!") is None   # no backtracking
    assert time.perf_counter() - started < 0.010
    assert cluster_of(t, b"/r/aaaa") == "c0"
    assert cluster_of(t, b"/x", [(b"x-n", b"42")]) == "c1"
    assert cluster_of(t, b"/x", [(b"x-n", "٤٢".encode())]) is None   # \d is ASCII digits in RE2
    assert cluster_of(t, "/café/m".encode()) == "c2"                  # . is one UTF-8 character
    assert cluster_of(t, b"/caf\xff/m") is None                      # ...and never a stray byte


def test_query_string_is_ignored_by_every_path_matcher():
    t = routes_table([
        {"match": {"path": "/exact"}},
        {"match": {"regex": "/re[0-9]+"}},
        {"match": {"prefix": "/pre/"}},
    ])
    assert cluster_of(t, b"/exact?x=1") == "c0"
    assert cluster_of(t, b"/re42?q=/exact") == "c1"
    assert cluster_of(t, b"/pre/x?a=b") == "c2"
    assert cluster_of(t, b"/nope?/exact") is None


def test_first_match_wins_across_indexed_and_scanned_routes():
    t = routes_table([
        {"match": {"prefix": "/svc.A/Get"}},              # scanned (not a whole-service prefix)
        {"match": {"path": "/svc.A/GetThing"}},           # indexed exact, but later
        {"match": {"prefix": "/svc.B/"}},                 # indexed service prefix
        {"match": {"path": "/svc.B/M"}},                  # shadowed by the service prefix
        {"match": {"path": "/svc.C/M"}},
        {"match": {"prefix": "/"}},                       # catch-all
        {"match": {"path": "/svc.D/M"}},                  # shadowed by the catch-all
    ])
    assert cluster_of(t, b"/svc.A/GetThing") == "c0"
    assert cluster_of(t, b"/svc.B/M") == "c2"
    assert cluster_of(t, b"/svc.C/M") == "c4"
    assert cluster_of(t, b"/svc.D/M") == "c5"
    assert cluster_of(t, b"/anything") == "c5"


def test_catch_all_first_shadows_everything():
    t = routes_table([{"match": {"prefix": "/"}}, {"match": {"path": "/a/b"}}, {"match": {"prefix": "/a/"}}])
    assert cluster_of(t, b"/a/b") == "c0"


# -- header matchers -----------------------------------------------------------

@pytest.mark.parametrize("matcher, value, expected", [
    ({"exact": "blue"}, b"blue", True),
    ({"exact": "blue"}, b"Blue", False),
    ({"prefix": "bl"}, b"blue", True),
    ({"prefix": "bl"}, b"xblue", False),
    ({"suffix": "ue"}, b"blue", True),
    ({"suffix": "ue"}, b"bluex", False),
    ({"regex": "b[a-z]+e"}, b"blue", True),
    ({"regex": "b[a-z]+"}, b"blue1", False),   # fullmatch
    ({"present": True}, b"", True),
    ({"present": True}, None, False),
    ({"present": False}, None, True),
    ({"present": False}, b"x", False),
    ({"exact": "blue"}, None, False),
])
def test_header_matcher_kinds_and_invert(matcher, value, expected):
    headers = [(b"x-color", value)] if value is not None else []
    plain = routes_table([{"match": {"prefix": "/", "headers": [{"name": "x-color", **matcher}]}}])
    inverted = routes_table([{"match": {"prefix": "/", "headers": [{"name": "x-color", **matcher, "invert": True}]}}])
    assert (cluster_of(plain, b"/s/m", headers) == "c0") is expected
    # An absent header fails every kind but `present`, inverted or not (Envoy, grpc-go).
    expected_inverted = False if value is None and "present" not in matcher else not expected
    assert (cluster_of(inverted, b"/s/m", headers) == "c0") is expected_inverted


def test_repeated_header_values_are_joined_with_commas():
    t = routes_table([{"match": {"prefix": "/", "headers": [{"name": "x-tag", "exact": "a,b"}]}}])
    assert cluster_of(t, b"/s/m", [(b"x-tag", b"a"), (b"other", b"z"), (b"x-tag", b"b")]) == "c0"
    assert cluster_of(t, b"/s/m", [(b"x-tag", b"a")]) is None


def test_bin_headers_are_never_matched():
    t = routes_table([
        {"match": {"prefix": "/", "headers": [{"name": "x-trace-bin", "present": True}]}},
        {"match": {"prefix": "/", "headers": [{"name": "x-trace-bin", "exact": "AAEC", "invert": True}]}},
        {"match": {"prefix": "/", "headers": [{"name": "x-trace-bin", "present": False}]}},
        {"match": {"prefix": "/"}},
    ])
    assert cluster_of(t, b"/s/m", [(b"x-trace-bin", b"AAEC")]) == "c3"
    assert cluster_of(t, b"/s/m", []) == "c3"


def test_all_header_matchers_must_hold_and_routes_with_headers_keep_their_order():
    t = routes_table([
        {"match": {"prefix": "/svc.A/", "headers": [{"name": "x-a", "exact": "1"}, {"name": "x-b", "present": True}]}},
        {"match": {"prefix": "/svc.A/"}},
        {"match": {"path": "/svc.A/M", "headers": [{"name": "x-a", "exact": "1"}]}},  # shadowed
    ])
    assert cluster_of(t, b"/svc.A/M", [(b"x-a", b"1"), (b"x-b", b"")]) == "c0"
    assert cluster_of(t, b"/svc.A/M", [(b"x-a", b"1")]) == "c1"


def test_indexed_table_agrees_with_a_linear_scan_on_random_configs():
    """The route indexes are an optimisation: a plain first-match scan must agree."""
    rng = random.Random(7)
    paths = [b"/", b"/a/", b"/a/x", b"/a/y", b"/b/", b"/b/x", b"/ab", b"/a", b"/b/x?q=1", b"/c/x"]
    for _ in range(300):
        routes = [random_route(rng) for _ in range(rng.randint(1, 7))]
        t = routes_table([dict(r) for r in routes])
        for path in paths:
            headers = [(b"x-h", rng.choice([b"1", b"2"]))] if rng.random() < 0.5 else []
            assert cluster_of(t, path, headers) == linear(routes, path, headers), (routes, path, headers)


def random_route(rng: random.Random) -> dict:
    kind = rng.choice(["path", "prefix", "regex"])
    value = {"path": rng.choice(["/a/x", "/b/x", "/ab", "/c/x"]),
             "prefix": rng.choice(["/", "/a/", "/b/", "/a"]),
             "regex": rng.choice(["/a/.", "/[ab]/x", "/.*"])}[kind]
    match = {kind: value}
    if rng.random() < 0.3:
        match["headers"] = [{"name": "x-h", "exact": "1"}]
    return {"match": match}


def linear(routes: list[dict], path: bytes, headers) -> str | None:
    p = path.split(b"?")[0].decode()
    for i, r in enumerate(routes):
        m = r["match"]
        ok = (("path" in m and p == m["path"]) or ("prefix" in m and p.startswith(m["prefix"]))
              or ("regex" in m and re.fullmatch(m["regex"], p) is not None))
        if ok and "headers" in m:
            ok = (b"x-h", b"1") in headers
        if ok:
            return f"c{i}"
    return None


# -- actions ---------------------------------------------------------------------

def test_weighted_clusters_split_by_weight():
    t = routes_table([{"match": {"prefix": "/"}, "route": {"weighted_clusters": [
        {"name": "stable", "weight": 90}, {"name": "off", "weight": 0}, {"name": "canary", "weight": 10}]}}], seed=42)
    entry = t.route(b"svc", b"/s/m", [])
    picks = [entry.pick_cluster() for _ in range(10_000)]
    assert abs(picks.count("canary") / len(picks) - 0.10) <= 0.02
    assert picks.count("off") == 0
    assert set(picks) == {"stable", "canary"}
    assert entry.clusters == ("stable", "canary")


def test_weighted_split_is_reproducible_with_a_seeded_rng():
    def draws(seed):
        entry = routes_table([{"match": {"prefix": "/"}, "route": {"weighted_clusters": [
            {"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}}], seed=seed).route(b"x", b"/", [])
        return [entry.pick_cluster() for _ in range(50)]
    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_a_draw_at_the_top_of_the_range_still_lands_on_a_cluster():
    entry = routes_table([{"match": {"prefix": "/"}, "route": {"weighted_clusters": [
        {"name": "a", "weight": 1}, {"name": "b", "weight": 3}]}}]).route(b"x", b"/", [])
    import dataclasses
    high = dataclasses.replace(entry, _random=lambda: 1.0)
    low = dataclasses.replace(entry, _random=lambda: 0.0)
    assert high.pick_cluster() == "b" and low.pick_cluster() == "a"


def test_route_action_fields():
    t = routes_table([
        {"name": "tuned", "match": {"prefix": "/a/"}, "route": {
            "cluster": "a", "timeout": "1.250s",
            "request_headers_to_add": [{"name": "X-Env", "value": "prod"}, {"name": "x-empty"}],
            "request_headers_to_remove": ["X-Debug", "cookie"],
            "hash_policy": {"header": "X-User"},
            "retry_policy": {"retry_on": ["UNAVAILABLE"], "num_retries": 2}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "b", "timeout": "0s"}},
    ])
    tuned = t.route(b"svc", b"/a/m", [])
    assert tuned.name == "tuned" and tuned.virtual_host == "vh"
    assert tuned.timeout == pytest.approx(1.25)
    assert tuned.headers_to_add == ((b"x-env", b"prod"), (b"x-empty", b""))
    # the names headers_to_add replace are dropped from the request too
    assert tuned.headers_to_remove == frozenset({b"x-debug", b"cookie", b"x-env", b"x-empty"})
    assert tuned.hash_header == b"x-user"
    assert tuned.action.retry.num_retries == 2
    plain = t.route(b"svc", b"/b/m", [])
    assert plain.name == "vh/1"  # unnamed routes are named by virtual host and index
    assert plain.timeout is None and plain.hash_header is None and plain.action.retry is None
    assert plain.headers_to_add == () and plain.headers_to_remove == frozenset()
    assert plain.pick_cluster() == "b"


def test_route_entries_are_frozen():
    entry = routes_table([{"match": {"prefix": "/"}}]).route(b"x", b"/", [])
    with pytest.raises(AttributeError):
        entry.timeout = 3.0


def test_route_cost(capsys):
    """Not an assertion: prints the per-call cost of route() and pick_cluster()."""
    routes = [{"match": {"path": f"/svc{i}.S/M{j}"}} for i in range(20) for j in range(5)]
    routes += [{"match": {"prefix": f"/svc{i}.S/"}} for i in range(20)]
    routes += [{"match": {"prefix": "/x", "headers": [{"name": "x-canary", "exact": "1"}]}},
               {"match": {"prefix": "/"}, "route": {"weighted_clusters": [{"name": "a", "weight": 9}, {"name": "b", "weight": 1}]}}]
    t = routes_table(routes)
    headers = [(b":method", b"POST"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
               (b"user-agent", b"grpc-python/1.85"), (b"grpc-timeout", b"1S")]
    cases = {"exact": b"/svc7.S/M3", "service prefix": b"/svc7.S/Other", "catch-all (1 scan)": b"/y/z"}
    n = 200_000
    with capsys.disabled():
        for label, path in cases.items():
            start = time.perf_counter()
            for _ in range(n):
                t.route(b"greeter.test:15001", path, headers)
            print(f"\nroute() {label}: {(time.perf_counter() - start) / n * 1e6:.3f} µs")
        entry = t.route(b"x", b"/y/z", headers)
        start = time.perf_counter()
        for _ in range(n):
            entry.pick_cluster()
        print(f"pick_cluster() weighted: {(time.perf_counter() - start) / n * 1e6:.3f} µs")


def test_exact_path_answer_depends_on_earlier_header_routes():
    t = routes_table([
        {"match": {"prefix": "/svc.A/", "headers": [{"name": "x-canary", "exact": "1"}]}},
        {"match": {"path": "/svc.A/M"}},
        {"match": {"path": "/svc.B/M"}},
    ])
    assert cluster_of(t, b"/svc.A/M", [(b"x-canary", b"1")]) == "c0"
    assert cluster_of(t, b"/svc.A/M", [(b"x-canary", b"0")]) == "c1"
    assert cluster_of(t, b"/svc.B/M", [(b"x-canary", b"1")]) == "c2"
    assert cluster_of(t, b"/svc.B/M?x=1") == "c2"
