"""The dashboard's model: served config joined with the proxies' reports and
sync state; several proxies' figures for one endpoint combined as documented."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from meshapi.v1 import load_pb2, management_pb2, resources_pb2
from meshgrpc.config.specs import duration
from meshgrpc.controlplane.load_book import LoadBook
from meshgrpc.dashboard.model import mesh_view
from meshgrpc.xds.snapshot import Snapshot
from tests.support.clock import FakeClock

MESH = {"clusters": [{"name": "greeter", "lb_policy": "PEAK_EWMA"}, {"name": "canary", "lb_policy": "ROUND_ROBIN"}],
        "endpoints": [{"cluster": "greeter", "endpoints": [{"address": "a:1", "zone": "z1"}, {"address": "b:1"}]},
                      {"cluster": "canary", "endpoints": [{"address": "c:1"}]}],
        "routes": [{"name": "default", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"name": "split", "match": {"prefix": "/"},
             "route": {"weighted_clusters": [{"name": "greeter", "weight": 90}, {"name": "canary", "weight": 10}]}}]}]}]}


def endpoint(address: str, calls: int, p50: float, p99: float, rtt: float, health="HEALTHY", ejected=False):
    return load_pb2.EndpointLoad(address=address, calls=calls, failures=calls // 10, in_flight=1,
                                 calls_by_status={"OK": calls}, latency_p50=duration(p50), latency_p99=duration(p99),
                                 rtt_estimate=duration(rtt), health=health, ejected=ejected, balanced_over=not ejected)


def view(reports: dict[str, load_pb2.LoadReport], statuses=()) -> dict:
    clock = FakeClock(5000.0)
    book = LoadBook(interval=2.0, clock=clock)
    for node, report in reports.items():
        book.add(book.open(node, ""), report)
    snapshot = Snapshot.from_mesh(json_format.ParseDict(MESH, resources_pb2.MeshConfig()))
    return mesh_view(snapshot, book, list(statuses), {"type.googleapis.com/meshapi.v1.Cluster": "3"})


def report(*endpoints, routes=()) -> load_pb2.LoadReport:
    return load_pb2.LoadReport(window=duration(2.0), clusters=[load_pb2.ClusterLoad(name="greeter", endpoints=endpoints)],
                               routes=[load_pb2.RouteLoad(route=r, cluster=c, calls=n) for r, c, n in routes])


def test_two_proxies_figures_for_an_endpoint_add_up_or_combine():
    v = view({"p1": report(endpoint("a:1", 100, 0.002, 0.010, 0.002), endpoint("b:1", 20, 0.020, 0.030, 0.025),
                           routes=[("split", "greeter", 120)]),
              "p2": report(endpoint("a:1", 300, 0.004, 0.050, 0.004), endpoint("b:1", 0, 0, 0, 0.030,
                                                                                ejected=True))})
    greeter = next(c for c in v["clusters"] if c["name"] == "greeter")
    a, b = greeter["endpoints"]
    assert greeter["calls_per_s"] == pytest.approx(210.0)                       # (100 + 300 + 20) / 2 s
    assert a["calls_per_s"] == pytest.approx(200.0) and a["share"] == pytest.approx(200 / 210)
    assert a["p50_s"] == pytest.approx((0.002 * 100 + 0.004 * 300) / 400)       # weighted by calls
    assert a["p99_s"] == pytest.approx(0.050)                                    # the highest
    assert a["rtt_estimate_s"] == pytest.approx(0.003) and a["in_flight"] == 2 and a["reported_by"] == 2
    assert a["zone"] == "z1" and a["health"] == "HEALTHY"
    assert b["health"] == "EJECTED" and b["ejected_by"] == 1 and b["balanced_by"] == 1
    split = v["routes"][0]["splits"]
    assert [(s["cluster"], s["weight_share"], s["calls_per_s"]) for s in split] == [
        ("greeter", 0.9, pytest.approx(60.0)), ("canary", 0.1, 0.0)]
    canary = next(c for c in v["clusters"] if c["name"] == "canary")
    assert canary["endpoints"] == [{"address": "c:1", "configured": True, "weight": 1, "zone": "",
                                    "configured_health": "HEALTHY", "health": "HEALTHY", "reported": False}]
    assert v["versions"] == {"clusters": "3"}


def test_proxies_show_their_sync_state_and_nack_reason():
    nacked = management_pb2.ProxyStatus(node_id="p1", types=[
        management_pb2.TypeStatus(type_url="type.googleapis.com/meshapi.v1.Cluster", state=1, acked_version="3"),
        management_pb2.TypeStatus(type_url="type.googleapis.com/meshapi.v1.RouteConfig", state=3, error="bad regex")])
    synced = management_pb2.ProxyStatus(node_id="p2", client="gRPC Python", types=[
        management_pb2.TypeStatus(type_url="x.Listener", state=1), management_pb2.TypeStatus(type_url="x.Y", state=4)])
    v = view({"p1": report()}, [synced, nacked])
    p1, p2 = v["proxies"]
    assert (p1["node_id"], p1["state"], p1["reports_load"]) == ("p1", "NACKED", True)
    assert p1["types"][1] == {"type": "RouteConfig", "state": "NACKED", "sent_version": "", "acked_version": "",
                              "error": "bad regex"}
    assert (p2["state"], p2["reports_load"], p2["last_report_age_s"]) == ("SYNCED", False, None)
