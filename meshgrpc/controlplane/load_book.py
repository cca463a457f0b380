"""What the control plane remembers of the proxies' load reports: a fixed window
of recent reports per connected proxy, and per-endpoint time series of the last
few minutes for the dashboard's charts.

Bounded: at most `max_proxies` reporting proxies (a stream past it is refused),
`history_s / interval` reports per proxy, and `history_s / step` time slots per
endpoint. A proxy whose stream ends is forgotten at once (its past calls stay in
the time series: they happened). Reports are parsed into frozen records at the
edge (`Report.of`); the book never holds protobuf. Pure: the clock is passed in
(wall seconds); used from the event loop thread only.

The series spread each report's calls over the time it covers, slot by slot, so
that reports arriving a little early or late do not make a steady rate look
jagged; a slot's p99 is the highest p99 reported in it, its p50 the mean of the
p50s weighted by calls (a proxy reports percentiles, not its histogram).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable, Mapping

from meshapi.v1 import load_pb2
from meshgrpc.config.specs import seconds
from meshgrpc.errors import ResourceExhausted

HISTORY_S = 300.0          # how far back the dashboard looks (its charts' 5 minutes)
MAX_PROXIES = 10_000
STALE_AFTER_INTERVALS = 3  # a report older than this many intervals no longer counts as "now"


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointFigures:
    """One endpoint in one report (EndpointLoad, parsed)."""

    cluster: str
    address: str
    zone: str
    weight: int
    calls: int
    failures: int
    by_status: Mapping[str, int]
    in_flight: int
    pending: int
    p50_s: float | None
    p99_s: float | None
    rtt_s: float
    health: str
    ejected: bool
    balanced_over: bool

    @classmethod
    def of(cls, cluster: str, e: load_pb2.EndpointLoad) -> EndpointFigures:
        has = e.HasField("latency_p50")
        return cls(cluster, e.address, e.zone, e.weight, e.calls, e.failures, dict(e.calls_by_status), e.in_flight,
                   e.pending, seconds(e.latency_p50) if has else None, seconds(e.latency_p99) if has else None,
                   seconds(e.rtt_estimate), e.health, e.ejected, e.balanced_over)


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """One load report as received at `at` (wall seconds), covering `window_s` before it."""

    at: float
    window_s: float
    versions: Mapping[str, str]
    clusters: Mapping[str, tuple[str, bool]]          # name -> (lb_policy, panic)
    endpoints: tuple[EndpointFigures, ...]
    routes: tuple[tuple[str, str, int], ...]          # (route, cluster, calls)

    @classmethod
    def of(cls, message: load_pb2.LoadReport, at: float) -> Report:
        return cls(at, seconds(message.window), dict(message.versions),
                   {c.name: (c.lb_policy, c.panic) for c in message.clusters},
                   tuple(EndpointFigures.of(c.name, e) for c in message.clusters for e in c.endpoints),
                   tuple((r.route, r.cluster, r.calls) for r in message.routes))


class ProxyWindow:
    """The recent reports of one proxy's stream, newest last."""

    __slots__ = ("node_id", "zone", "connected_at", "reports")

    def __init__(self, node_id: str, zone: str, connected_at: float, size: int) -> None:
        self.node_id, self.zone, self.connected_at = node_id, zone, connected_at
        self.reports: deque[Report] = deque(maxlen=size)

    @property
    def latest(self) -> Report | None:
        return self.reports[-1] if self.reports else None

    def __repr__(self) -> str:
        return f"<ProxyWindow {self.node_id!r} reports={len(self.reports)}>"


@dataclasses.dataclass(slots=True)
class _Slot:
    calls: float = 0.0
    failures: float = 0.0
    p50_weighted: float = 0.0    # sum of p50 x calls
    p50_calls: float = 0.0
    p99: float | None = None


class Series:
    """Per (cluster, address), calls and latency per time slot of `step` seconds."""

    def __init__(self, step: float, history_s: float) -> None:
        self.step = step
        self.slots = max(1, math.ceil(history_s / step))
        self._by_slot: dict[int, dict[tuple[str, str], _Slot]] = {}

    def add(self, report: Report) -> None:
        end = report.at
        start = max(end - report.window_s, end - self.slots * self.step)
        for e in report.endpoints:
            self._spread((e.cluster, e.address), start, end, e)
        self._prune(end)

    def _spread(self, key: tuple[str, str], start: float, end: float, e: EndpointFigures) -> None:
        span = end - start
        first, last = int(start // self.step), int(end // self.step)
        for k in range(first, last + 1):
            overlap = min(end, (k + 1) * self.step) - max(start, k * self.step)
            if overlap <= 0 and span > 0:
                continue
            slot = self._by_slot.setdefault(k, {}).setdefault(key, _Slot())
            share = overlap / span if span > 0 else 1.0
            slot.calls += e.calls * share
            slot.failures += e.failures * share
        if e.p50_s is not None:
            slot = self._by_slot.setdefault(last, {}).setdefault(key, _Slot())
            slot.p50_weighted += e.p50_s * e.calls
            slot.p50_calls += e.calls
            slot.p99 = e.p99_s if slot.p99 is None else max(slot.p99, e.p99_s)

    def _prune(self, now: float) -> None:
        oldest = int(now // self.step) - self.slots
        for k in [k for k in self._by_slot if k < oldest]:
            del self._by_slot[k]

    def points(self, cluster: str, now: float) -> list[dict]:
        """The finished slots of the last `history_s`, oldest first: for each, its
        start time and per endpoint calls/s, failures/s, p50 and p99 (seconds, None
        if no call)."""
        self._prune(now)
        current = int(now // self.step)
        points = []
        for k in range(current - self.slots, current):
            slot = self._by_slot.get(k, {})
            endpoints = {address: _point(s, self.step) for (c, address), s in slot.items() if c == cluster}
            points.append({"t": k * self.step, "endpoints": endpoints})
        return points


def _point(slot: _Slot, step: float) -> dict:
    p50 = slot.p50_weighted / slot.p50_calls if slot.p50_calls else None
    return {"calls_per_s": slot.calls / step, "failures_per_s": slot.failures / step, "p50_s": p50, "p99_s": slot.p99}


class LoadBook:
    """The reports of every proxy with an open load-report stream."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.time, history_s: float = HISTORY_S,
                 max_proxies: int = MAX_PROXIES) -> None:
        self.interval = interval
        self._clock = clock
        self._window_size = max(1, math.ceil(history_s / interval))
        self._max_proxies = max_proxies
        self._proxies: dict[str, ProxyWindow] = {}
        self.series = Series(interval, history_s)
        self.reports = 0  # accepted so far

    def open(self, node_id: str, zone: str) -> ProxyWindow:
        """A new window for `node_id` (replacing an older stream's: the proxy reconnected)."""
        if node_id not in self._proxies and len(self._proxies) >= self._max_proxies:
            raise ResourceExhausted(f"load reports: {self._max_proxies} proxies already report to this control plane")
        window = self._proxies[node_id] = ProxyWindow(node_id, zone, self._clock(), self._window_size)
        return window

    def add(self, window: ProxyWindow, message: load_pb2.LoadReport) -> Report:
        report = Report.of(message, self._clock())
        window.reports.append(report)
        if self._proxies.get(window.node_id) is window:
            self.series.add(report)
        self.reports += 1
        return report

    def close(self, window: ProxyWindow) -> None:
        """Forgets the proxy, unless a newer stream of the same node took its place."""
        if self._proxies.get(window.node_id) is window:
            del self._proxies[window.node_id]

    def proxies(self) -> list[ProxyWindow]:
        return list(self._proxies.values())

    def current(self) -> list[tuple[ProxyWindow, Report]]:
        """Each proxy's latest report, if it is recent enough to describe now."""
        now = self._clock()
        horizon = STALE_AFTER_INTERVALS * self.interval
        return [(w, w.latest) for w in self._proxies.values() if w.latest is not None and now - w.latest.at <= horizon]

    def now(self) -> float:
        return self._clock()

    def __len__(self) -> int:
        return len(self._proxies)

    def __repr__(self) -> str:
        return f"<LoadBook proxies={len(self._proxies)} reports={self.reports} interval={self.interval:g}s>"
