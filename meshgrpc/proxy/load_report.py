"""Building a proxy's load report (meshapi.v1.LoadReport) from what it already
tracks: each endpoint's window of attempts (EndpointStats.take_window), its
state now (in flight, pending, the rtt estimate, health, ejection), the
clusters' panic state, the calls per (route, cluster) from the proxy's metrics,
and the config versions in effect.

Pure apart from taking the endpoints' windows (which resets them, so each
attempt is reported once); time is passed in. Runs on the event loop thread,
once per report interval, never on the call path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from meshapi.v1 import discovery_pb2, load_pb2
from meshgrpc.config.specs import duration

class RouteCallDeltas:
    """Turns cumulative calls per (route, cluster) into the calls since the previous read."""

    def __init__(self, totals: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._totals = totals
        self._seen: dict[tuple[str, str], int] = dict(totals())

    def take(self) -> list[load_pb2.RouteLoad]:
        now = dict(self._totals())
        loads = [load_pb2.RouteLoad(route=route, cluster=cluster, calls=n - self._seen.get((route, cluster), 0))
                 for (route, cluster), n in sorted(now.items()) if n > self._seen.get((route, cluster), 0)]
        self._seen = now
        return loads


def hello(node: discovery_pb2.Node, versions: Mapping[str, str]) -> load_pb2.LoadReport:
    """A stream's first report: who is reporting, no figures."""
    return load_pb2.LoadReport(node=node, versions=dict(versions))


def build_report(clusters: Iterable, routes: list[load_pb2.RouteLoad], versions: Mapping[str, str],
                 window_s: float, now: float) -> load_pb2.LoadReport:
    """The report of a window of `window_s` seconds ending at `now` (the endpoints'
    clock). `clusters`: the ClusterStates in effect; takes each endpoint's window."""
    return load_pb2.LoadReport(window=duration(window_s), versions=dict(versions),
                               clusters=[cluster_load(c, now) for c in clusters], routes=routes)


def cluster_load(cluster, now: float) -> load_pb2.ClusterLoad:
    balanced = {id(e) for e in cluster.candidates}
    return load_pb2.ClusterLoad(
        name=cluster.name, lb_policy=cluster.spec.lb_policy, panic=cluster.panic,
        endpoints=[endpoint_load(e, id(e) in balanced, now) for e in cluster.endpoints])


def endpoint_load(endpoint, balanced_over: bool, now: float) -> load_pb2.EndpointLoad:
    stats = endpoint.stats
    window = stats.take_window()
    load = load_pb2.EndpointLoad(
        address=endpoint.address, zone=endpoint.zone, weight=endpoint.weight, calls=window.calls,
        failures=window.failures, calls_by_status=window.by_status(), in_flight=max(0, stats.in_flight),
        pending=max(0, stats.pending), rtt_estimate=duration(endpoint.rtt_estimate(now)),
        health=endpoint.health_label(), ejected=stats.outlier.ejected_until is not None,
        balanced_over=balanced_over)
    p50, p99 = window.percentile(0.5), window.percentile(0.99)
    if p50 is not None:
        load.latency_p50.CopyFrom(duration(p50))
        load.latency_p99.CopyFrom(duration(p99))
    return load
