"""Building a proxy's load report from its clusters, endpoints and metrics."""

from __future__ import annotations

import random

from google.protobuf import json_format

from meshapi.v1 import resources_pb2
from meshgrpc.admin.metrics import ProxyMetrics, ScrapeGauges
from meshgrpc.config.specs import seconds
from meshgrpc.proxy.load_report import RouteCallDeltas, build_report
from tests.support.clock import FakeClock
from tests.support.specs import cluster_set_of


def _clusters(clock: FakeClock):
    cluster = json_format.ParseDict({"name": "svc", "lb_policy": "PEAK_EWMA",
                                     "outlier_detection": {"consecutive_failures": 1, "max_ejection_percent": 100}}, resources_pb2.Cluster())
    endpoints = json_format.ParseDict({"cluster": "svc", "endpoints": [
        {"address": "10.0.0.1:80", "zone": "a", "weight": 2}, {"address": "10.0.0.2:80"},
        {"address": "10.0.0.3:80", "health_status": "DRAINING"}]}, resources_pb2.EndpointSet())
    return cluster_set_of({"svc": cluster}, {"svc": endpoints}, rng=random.Random(0), clock=clock)


def test_a_report_carries_each_endpoints_window_and_state_now():
    clock = FakeClock()
    clusters = _clusters(clock)
    svc = clusters.get("svc")
    a, b, _ = svc.endpoints
    for _ in range(10):
        a.on_start()
        a.on_first_response(0.004)
        a.on_finish(True, 0.004, 0, responded=True)
    b.on_start()
    b.on_finish(False, 0.5, 14)       # UNAVAILABLE: ejects b (consecutive_failures 1)
    a.on_start()                      # one in flight, no response yet
    report = build_report(clusters, [], {"t": "7"}, 2.0, clock())
    assert seconds(report.window) == 2.0 and dict(report.versions) == {"t": "7"}
    (cluster,) = report.clusters
    assert (cluster.name, cluster.lb_policy) == ("svc", "PEAK_EWMA")
    ea, eb, ec = cluster.endpoints
    assert (ea.address, ea.zone, ea.weight, ea.calls, ea.failures) == ("10.0.0.1:80", "a", 2, 10, 0)
    assert dict(ea.calls_by_status) == {"OK": 10} and (ea.in_flight, ea.pending) == (1, 1)
    assert 0.0035 < seconds(ea.latency_p50) < 0.0046 and ea.balanced_over and not ea.ejected
    assert (eb.calls, eb.failures, dict(eb.calls_by_status), eb.ejected) == (1, 1, {"UNAVAILABLE": 1}, True)
    assert not eb.balanced_over and eb.health == "HEALTHY"
    assert ec.health == "DRAINING" and not ec.balanced_over and not ec.HasField("latency_p50")
    assert seconds(ea.rtt_estimate) == a.rtt_estimate(clock())

    again = build_report(clusters, [], {}, 2.0, clock())   # each attempt is reported once
    assert [e.calls for e in again.clusters[0].endpoints] == [0, 0, 0]


def test_route_calls_are_the_calls_since_the_previous_report():
    metrics = ProxyMetrics(lambda: ScrapeGauges({}, {}))
    metrics.on_call_end("r", "svc", "a", 0, 200, 0.001)
    deltas = RouteCallDeltas(metrics.route_calls)   # what came before it is not reported
    for status in (0, 0, 14):
        metrics.on_call_end("r", "svc", "a", status, 200, 0.001)
    metrics.on_call_end("r", "canary", "b", 0, 200, 0.001)
    assert [(r.route, r.cluster, r.calls) for r in deltas.take()] == [("r", "canary", 1), ("r", "svc", 3)]
    assert deltas.take() == []
