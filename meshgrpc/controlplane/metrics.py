"""The control plane's Prometheus metrics (its HTTP port's /metrics).

It subscribes to what the core parts report rather than being called by them
in their own terms: the discovery servers' observer (responses sent, answers,
streams ended), the controller's commits and the publisher's publications.
Gauges (connected streams, reporting proxies, registered instances) are read at
scrape time from their owners.

- meshgrpc_cp_connected_proxies{stream}: discovery streams open now (sotw, delta,
  ads: proxyless gRPC clients on Envoy's ADS)
- meshgrpc_cp_load_reporting_proxies: proxies with a load-report stream open
- meshgrpc_cp_pushes_total{stream,type} and meshgrpc_cp_push_size_bytes{stream,type}
- meshgrpc_cp_nacks_total{stream,type}
- meshgrpc_cp_convergence_seconds: a committed change to the last ACK of it
  (convergence.py says exactly what is timed); meshgrpc_cp_convergence_abandoned_total
- meshgrpc_cp_registrations_total, meshgrpc_cp_registered_instances
- meshgrpc_cp_store_commit_seconds{kind}: apply, delete, register, unregister
- meshgrpc_cp_http2_limit_events_total{limit}: what the gRPC server's HTTP/2 limits
  did on its ports (too_many_pings GOAWAYs, floods ended, streams refused; the
  codec's Counters, read at scrape time)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from meshgrpc.controlplane.convergence import ConvergenceTracker
from meshgrpc.xds.protocol import MESH

# The *_created series (a timestamp per counter and histogram) only double the
# text every scrape; Prometheus does not need them.
disable_created_metrics()

SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1 << 20, 4 << 20, 16 << 20, 64 << 20)
CONVERGENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def stream_kind(session) -> str:
    """How a stream is labelled: its variant on meshgrpc's API, "ads" on Envoy's."""
    return session.variant.name if session.variant.protocol is MESH else "ads"


def short_type(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]


class ControlPlaneMetrics:
    """Counts discovery, commits and convergence; renders /metrics.

    `servers`: the discovery servers (sidecars', proxyless clients'); `reporting`
    and `registered` give the load-reporting proxies and the registered instances
    at scrape time; `clock` is monotonic seconds, the publisher's."""

    def __init__(self, servers: Sequence, reporting: Callable[[], int], registered: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic,
                 http2_limits: Callable[[], dict[str, int]] = dict) -> None:
        self._servers = servers
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.pushes = Counter("meshgrpc_cp_pushes", "Discovery responses sent, by stream kind and resource type",
                              ["stream", "type"], registry=r)
        self.push_size = Histogram("meshgrpc_cp_push_size_bytes", "Size of each discovery response sent",
                                   ["stream", "type"], buckets=SIZE_BUCKETS, registry=r)
        self.nacks = Counter("meshgrpc_cp_nacks", "Discovery responses rejected by the node, by resource type",
                             ["stream", "type"], registry=r)
        self.convergence = Histogram("meshgrpc_cp_convergence_seconds",
                                     "Time from a committed change to the last ACK of it by the connected nodes",
                                     buckets=CONVERGENCE_BUCKETS, registry=r)
        abandoned = Counter("meshgrpc_cp_convergence_abandoned",
                            "Changes no longer waited for (too many pending, or pending too long)", registry=r)
        self.commits = Histogram("meshgrpc_cp_store_commit_seconds", "Time the store took to commit a change",
                                 ["kind"], buckets=COMMIT_BUCKETS, registry=r)
        self.registrations = Counter("meshgrpc_cp_registrations", "Instance registrations committed", registry=r)
        self.tracker = ConvergenceTracker(self.convergence.observe, abandoned.inc, clock)
        r.register(_ScrapeGauges(servers, reporting, registered, http2_limits))

    # -- the discovery servers' observer -------------------------------------------------
    def sent(self, server, session, type_url: str, size: int) -> None:
        labels = (stream_kind(session), short_type(type_url))
        self.pushes.labels(*labels).inc()
        self.push_size.labels(*labels).observe(size)

    def answered(self, server, session, type_url: str, outcome: str) -> None:
        nacked = outcome == "nack"
        if nacked:
            self.nacks.labels(stream_kind(session), short_type(type_url)).inc()
        if self.tracker.waiting_for(session):
            self.tracker.answered(session, synced=not nacked and session.in_sync(), nacked=nacked)

    def closed(self, server, session) -> None:
        self.tracker.gone(session)

    # -- the controller's and the publisher's hooks --------------------------------------
    def on_commit(self, kind: str, seconds: float) -> None:
        self.commits.labels(kind).observe(seconds)
        if kind == "register":
            self.registrations.inc()

    def on_published(self, committed_at: float) -> None:
        """A snapshot carrying changes committed at `committed_at` is current now."""
        self.tracker.published(committed_at, [s for server in self._servers for s in server.sessions()
                                              if not s.in_sync()])

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeGauges:
    """Gauges read from their owners when /metrics is scraped."""

    def __init__(self, servers: Sequence, reporting: Callable[[], int], registered: Callable[[], int],
                 http2_limits: Callable[[], dict[str, int]]) -> None:
        self._servers, self._reporting, self._registered = servers, reporting, registered
        self._http2_limits = http2_limits

    def collect(self) -> Iterable:
        connected = GaugeMetricFamily("meshgrpc_cp_connected_proxies",
                                      "Discovery streams open now, by stream kind", labels=["stream"])
        counts = {"sotw": 0, "delta": 0, "ads": 0}
        for server in self._servers:
            for session in server.sessions():
                counts[stream_kind(session)] += 1
        for kind, n in counts.items():
            connected.add_metric([kind], n)
        yield connected
        yield GaugeMetricFamily("meshgrpc_cp_load_reporting_proxies", "Proxies with a load-report stream open",
                                value=self._reporting())
        yield GaugeMetricFamily("meshgrpc_cp_registered_instances", "Service instances registered now",
                                value=self._registered())
        limits = CounterMetricFamily("meshgrpc_cp_http2_limit_events",
                                     "What the gRPC server's HTTP/2 limits did (pings refused, floods ended)",
                                     labels=["limit"])
        for limit, count in self._http2_limits().items():
            limits.add_metric([limit], count)
        yield limits
