"""The proxy's Prometheus metrics.

The call path reports each finished call through `on_call_end`, which costs one
dict lookup and a few integer updates; Prometheus metric families are only built
when /metrics is scraped. In-flight counts and config versions are read from the
proxy's state at scrape time rather than tracked twice.
"""

from __future__ import annotations

import bisect
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

# Seconds; spans a loopback call (~0.2 ms) to a slow remote one.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _CallStats:
    """Counts and a latency histogram for one (route, cluster, status)."""

    __slots__ = ("count", "latency_sum", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.latency_sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)


class ProxyMetrics:
    """Receives call outcomes and config events; renders Prometheus text on demand."""

    def __init__(self, gauges: Callable[[], "ScrapeGauges"]) -> None:
        self._calls: dict[tuple[str, str, int | None, int | None], _CallStats] = {}
        self._events: dict[tuple[str, str, str], int] = {}
        self._gauges = gauges
        self.nacks = 0
        self._access_log = None
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def on_call_end(self, route: str, cluster: str, endpoint: str, grpc_status: int | None,
                    http_status: int | None, latency_s: float) -> None:
        """Called by the relay once per call; grpc_status is None for plain HTTP/2."""
        key = (route, cluster, grpc_status, http_status)
        stats = self._calls.get(key)
        if stats is None:
            stats = self._calls[key] = _CallStats()
        stats.count += 1
        stats.latency_sum += latency_s
        stats.buckets[bisect.bisect_left(LATENCY_BUCKETS, latency_s)] += 1

    def on_event(self, event: str, name: str, detail: str) -> None:
        """A resilience event from the relay (rare next to calls: a dict update)."""
        key = (event, name, detail)
        self._events[key] = self._events.get(key, 0) + 1

    def on_nack(self) -> None:
        self.nacks += 1

    def route_calls(self) -> dict[tuple[str, str], int]:
        """Calls finished so far per (route, cluster), every status together (for load reports)."""
        totals: dict[tuple[str, str], int] = {}
        for (route, cluster, _, _), stats in list(self._calls.items()):
            totals[route, cluster] = totals.get((route, cluster), 0) + stats.count
        return totals

    def watch_access_log(self, access_log) -> None:
        """Reports an AccessLog's lines written and dropped (proxy/access_log.py)."""
        self._access_log = access_log

    def render(self) -> bytes:
        return generate_latest(self._registry)

    def collect(self) -> Iterable:
        yield from self._call_families()
        yield from self._event_families()
        gauges = self._gauges()
        in_flight = GaugeMetricFamily("meshgrpc_proxy_in_flight_calls", "Calls in flight per cluster",
                                      labels=["cluster"])
        for cluster, count in gauges.in_flight.items():
            in_flight.add_metric([cluster], count)
        yield in_flight
        edge = CounterMetricFamily("meshgrpc_proxy_edge_limit_events",
                                   "What the edge's limits did (floods ended, streams refused, connections closed)",
                                   labels=["side", "limit"])
        for side, counts in gauges.edge.items():
            for limit, count in counts.items():
                edge.add_metric([side, limit], count)
        yield edge
        versions = GaugeMetricFamily("meshgrpc_proxy_config_info", "Config version in effect per type",
                                     labels=["type", "version"])
        for type_url, version in gauges.versions.items():
            versions.add_metric([type_url.rsplit(".", 1)[-1], version], 1)
        yield versions
        nacks = CounterMetricFamily("meshgrpc_proxy_config_nacks", "Config updates rejected")
        nacks.add_metric([], self.nacks)
        yield nacks
        decisions = CounterMetricFamily(
            "meshgrpc_proxy_authz_decisions", "Inbound calls by authorization decision: allow, deny, or would_deny "
            "(a dry-run policy's; the call passed). policy is \"\" where no policy applied", labels=["policy", "decision"])
        for (policy, decision), count in sorted(gauges.authz.items()):
            decisions.add_metric([policy, decision], count)
        yield decisions
        if self._access_log is not None:
            yield CounterMetricFamily("meshgrpc_proxy_access_log_lines", "Access log lines written",
                                      value=self._access_log.written)
            yield CounterMetricFamily("meshgrpc_proxy_access_log_dropped",
                                      "Access log lines dropped: the buffer was full (the log's file "
                                      "descriptor did not take them in time)", value=self._access_log.dropped)

    def _call_families(self) -> Iterable:
        labels = ["route", "cluster", "grpc_status", "http_status"]
        calls = CounterMetricFamily("meshgrpc_proxy_calls", "Calls finished", labels=labels)
        latency = HistogramMetricFamily("meshgrpc_proxy_call_latency_seconds",
                                        "Time from request headers to the end of the call", labels=labels)
        for (route, cluster, grpc_status, http_status), stats in list(self._calls.items()):
            key = [route, cluster, "" if grpc_status is None else str(grpc_status),
                   "" if http_status is None else str(http_status)]
            calls.add_metric(key, stats.count)
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), stats.buckets):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric(key, buckets, stats.latency_sum)
        yield calls
        yield latency


    def _event_families(self) -> Iterable:
        families = {}
        for (event, name, detail), count in list(self._events.items()):
            kind = _EVENTS.get(event)
            if kind is None:
                continue
            metric, help_text, labels = kind
            family = families.get(event)
            if family is None:
                family = families[event] = CounterMetricFamily(metric, help_text, labels=labels)
            family.add_metric([name, detail][:len(labels)], count)
        yield from families.values()


# Relay event -> (metric, help, labels): the first label is the event's name
# (a cluster or a route), the second its detail.
_EVENTS = {
    "retry": ("meshgrpc_proxy_retries", "Retries started, by cluster and what failed", ["cluster", "reason"]),
    "hedge": ("meshgrpc_proxy_hedges", "Hedged attempts started, by cluster", ["cluster"]),
    "retry_refused": ("meshgrpc_proxy_retries_refused",
                      "Retries and hedges not started: the retry budget or max_retries said no",
                      ["cluster", "limit"]),
    "overflow": ("meshgrpc_proxy_breaker_overflows", "Calls refused by a circuit breaker",
                 ["cluster", "breaker"]),
    "rate_limited": ("meshgrpc_proxy_rate_limited", "Calls refused by a route's rate limit", ["route"]),
    "fault": ("meshgrpc_proxy_faults_injected", "Faults injected, by route and kind", ["route", "kind"]),
    "mirror": ("meshgrpc_proxy_mirrored", "Calls copied to a shadow cluster", ["cluster", "route"]),
}


class ScrapeGauges:
    """What the proxy's state reports at scrape time."""

    def __init__(self, in_flight: dict[str, int], versions: dict[str, str],
                 edge: dict[str, dict[str, int]] | None = None,
                 authz: dict[tuple[str, str], int] | None = None) -> None:
        self.in_flight = in_flight
        self.versions = versions
        self.edge = edge or {}  # side (downstream, upstream, inbound...) -> what each HTTP/2 limit did
        self.authz = authz or {}  # (policy, decision) -> inbound calls
