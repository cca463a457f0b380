"""One endpoint of one cluster as the call path sees it: its config for this build
(EndpointState) and the stats that outlive builds (EndpointStats): counters, the
peak-EWMA round-trip estimate, the health-check verdict, the outlier tally, the
failure penalty and server pushback, and the backend's latest load report.
The relay reports every call here; balancers and outlier detection read it."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from meshgrpc.config.specs import EndpointSpec, FailurePenaltySpec, PeakEwmaSpec
from meshgrpc.config.specs.common import default_of
from meshgrpc.proxy import ewma, penalty
from meshgrpc.proxy.orca.endpoint_load import EndpointLoad
from meshgrpc.proxy.load_window import LoadWindow
from meshgrpc.proxy.outlier import OutlierDetector, OutlierTally

if TYPE_CHECKING:
    from meshgrpc.proxy.cluster import ClusterState

log = logging.getLogger(__name__)

_NOT_PICKED = frozenset({"UNHEALTHY", "DRAINING"})
_DEFAULT_RTT = default_of(PeakEwmaSpec, "default_rtt")
_DEFAULT_DECAY = default_of(PeakEwmaSpec, "decay")
_DEFAULT_PENALTY = FailurePenaltySpec()


class EndpointStats:
    """The state of one (cluster, address) that outlives config builds. Updated on
    the event loop thread only: by the relay (through EndpointState), the health
    checker (through ClusterSet.set_health) and outlier decisions."""

    __slots__ = ("in_flight", "total", "failures", "last_latency_s", "pending", "rtt", "rtt_at",
                 "check_healthy", "outlier", "unreachable_until", "penalty", "penalty_at", "pushed_back_until",
                 "load", "window")

    def __init__(self, rtt: float = _DEFAULT_RTT, now: float = 0.0) -> None:
        self.in_flight = 0  # calls started and not finished
        self.total = 0  # calls started
        self.failures = 0  # calls finished not ok
        self.last_latency_s: float | None = None
        self.pending = 0  # calls started that have no response yet (PEAK_EWMA's load)
        self.rtt = rtt  # peak-EWMA estimate (seconds) as of rtt_at; see ewma.py
        self.rtt_at = now
        self.check_healthy = True  # last active health-check verdict; optimistic until checked
        self.outlier = OutlierTally()
        # Connecting failed: no new call is sent here before this (the pool's reconnect
        # back-off), so calls do not spend their retries and the budget on an address
        # that refuses connections.
        self.unreachable_until = 0.0
        # Recent UNAVAILABLE / RESOURCE_EXHAUSTED answers, decaying (penalty.py), as of penalty_at.
        self.penalty = 0.0
        self.penalty_at = 0.0
        # The server asked for no calls before this (grpc-retry-pushback-ms, Retry-After).
        self.pushed_back_until = 0.0
        self.load = EndpointLoad()  # the backend's latest load report (ORCA)
        # Attempts since the last load report (the reporter takes and resets it).
        self.window = LoadWindow()

    def take_window(self) -> LoadWindow:
        """The figures since the previous take; a fresh window starts now."""
        window, self.window = self.window, LoadWindow()
        return window


class EndpointState:
    """One endpoint of one cluster: its config (fixed for this build) and its stats
    (shared with the previous and next builds).

    What the relay calls, on the event loop thread, for each call sent here:
    - `on_start()` when the call is sent;
    - `on_first_response(latency_s)` when the first response (headers, or a
      trailers-only answer) arrives, `latency_s` after on_start: the round trip
      PEAK_EWMA learns from, and the end of the call's "pending" time;
    - `on_finish(ok, latency_s, grpc_status=None, responded=False)` exactly once
      when the call ends, `responded=True` if on_first_response was called for it.
      `grpc_status` (the int code, None when there was none) is what outlier
      detection classifies; without it a not-ok call counts as a failure. A call
      that ends without a response gives its latency to the estimate only if the
      call succeeded or the latency is above the estimate (ewma.failed). An
      UNAVAILABLE or RESOURCE_EXHAUSTED status adds to the failure penalty.
    - `pushed_back(seconds)` when the answer asked for no calls for that long
      (`grpc-retry-pushback-ms` >= 0, or Retry-After on plain HTTP/2; see
      pushback.py): the P2C policies leave the endpoint out until then;
    - `on_load_report(report)` for a per-call load report (orca/report.py's
      `take_load_report` calls it).
    """

    __slots__ = ("cluster", "spec", "address", "host", "port", "weight", "zone", "health", "stats",
                 "_checked", "_clock", "_decay", "_detector", "_owner", "_penalty")

    def __init__(self, cluster: str, spec: EndpointSpec, stats: EndpointStats, *,
                 clock: Callable[[], float] = time.monotonic, decay: float = _DEFAULT_DECAY,
                 detector: OutlierDetector | None = None, checked: bool = False,
                 failure_penalty: FailurePenaltySpec = _DEFAULT_PENALTY) -> None:
        self.cluster = cluster
        self.spec = spec
        self.address = spec.address
        self.host, self.port = spec.host, spec.port
        self.weight = spec.weight
        self.zone = spec.zone
        self.health = spec.health
        self.stats = stats
        self._checked = checked  # the cluster runs active health checks
        self._clock = clock
        self._decay = decay
        self._detector = detector
        self._penalty = failure_penalty
        self._owner: ClusterState | None = None  # set by the ClusterState built over it

    @property
    def eligible(self) -> bool:
        """May get calls at all (in panic mode, even when not usable)."""
        return self.weight > 0 and self.health != "DRAINING"

    @property
    def usable(self) -> bool:
        """Should get calls: eligible, healthy by config and checks, not ejected."""
        return self.unusable_reason() is None

    def unusable_reason(self, now: float | None = None) -> str | None:
        """Why the endpoint gets no calls (outside panic mode); None when it is usable."""
        s = self.stats
        if self.weight <= 0:
            return "weight 0"
        if self.health in _NOT_PICKED:
            return f"{self.health} by the control plane"
        if s.outlier.ejected_until is not None:
            return "ejected by outlier detection"
        if self._checked and not s.check_healthy:
            return "failing its active health checks"
        now = self._clock() if now is None else now
        if s.unreachable_until > now:
            return f"unreachable: in its reconnect back-off for {s.unreachable_until - now:.2f}s"
        return None

    @property
    def in_flight(self) -> int:
        return self.stats.in_flight

    @property
    def total(self) -> int:
        return self.stats.total

    @property
    def failures(self) -> int:
        return self.stats.failures

    @property
    def last_latency_s(self) -> float | None:
        return self.stats.last_latency_s

    def rtt_estimate(self, now: float | None = None) -> float:
        s = self.stats
        return ewma.current(s.rtt, s.rtt_at, self._clock() if now is None else now, self._decay)

    def on_start(self) -> None:
        stats = self.stats
        stats.in_flight += 1
        stats.total += 1
        stats.pending += 1

    def on_first_response(self, latency_s: float) -> None:
        stats = self.stats
        stats.pending -= 1
        now = self._clock()
        stats.rtt = ewma.observe(stats.rtt, stats.rtt_at, latency_s, now, self._decay)
        stats.rtt_at = now

    def on_finish(self, ok: bool, latency_s: float, grpc_status: int | None = None,
                  responded: bool = False) -> None:
        stats = self.stats
        stats.in_flight -= 1
        stats.last_latency_s = latency_s
        if not ok:
            stats.failures += 1
        stats.window.record(ok, latency_s, grpc_status)
        if not responded:
            self._finish_unanswered(stats, ok, latency_s)
        if (grpc_status == penalty.UNAVAILABLE or grpc_status == penalty.RESOURCE_EXHAUSTED) \
                and self._penalty.penalty > 0.0:  # penalty.penalized, inlined on the per-call path
            now = self._clock()
            stats.penalty = penalty.add_failure(stats.penalty, stats.penalty_at, now, self._penalty.decay)
            stats.penalty_at = now
        detector = self._detector
        if detector is not None and detector.record(stats.outlier, ok, grpc_status):
            owner = self._owner
            if owner is not None:
                owner.on_consecutive_failures(self.address)

    def _finish_unanswered(self, stats: EndpointStats, ok: bool, latency_s: float) -> None:
        stats.pending -= 1
        now = self._clock()
        if ok:
            stats.rtt = ewma.observe(stats.rtt, stats.rtt_at, latency_s, now, self._decay)
            stats.rtt_at = now
        else:
            stats.rtt, stats.rtt_at = ewma.failed(stats.rtt, stats.rtt_at, latency_s, now, self._decay)

    def pushed_back(self, seconds: float) -> None:
        """The endpoint asked for no calls for `seconds` (capped by the cluster's
        failure_penalty.max_pushback; 0 there ignores pushback)."""
        seconds = min(seconds, self._penalty.max_pushback)
        if seconds > 0.0:
            until = self._clock() + seconds
            if until > self.stats.pushed_back_until:
                self.stats.pushed_back_until = until

    def recent_failures(self, now: float | None = None) -> float:
        """The decayed count of recent UNAVAILABLE / RESOURCE_EXHAUSTED answers."""
        s = self.stats
        return penalty.current(s.penalty, s.penalty_at, self._clock() if now is None else now,
                               self._penalty.decay)

    def on_load_report(self, report) -> None:
        """A load report (orca/report.py's LoadReport) from this endpoint."""
        self.stats.load.record(report, self._clock())

    def unreachable(self, until: float) -> None:
        """Connecting failed: out of the picker until `until` (the cluster's timer brings it back)."""
        self.stats.load.end_run()  # gRFC A58: a reconnected endpoint's weight waits out the blackout again
        if until > self.stats.unreachable_until:
            self.stats.unreachable_until = until
            owner = self._owner
            if owner is not None:
                owner.refresh()

    def health_label(self) -> str:
        if self.health == "HEALTHY" and self._checked and not self.stats.check_healthy:
            return "UNHEALTHY"
        return self.health

    def describe(self, now: float | None = None) -> dict:
        stats, tally = self.stats, self.stats.outlier
        now = self._clock() if now is None else now
        ejected_for = None if tally.ejected_until is None else max(0.0, tally.ejected_until - now)
        return {
            "address": self.address,
            "weight": self.weight,
            "zone": self.zone,
            "health": self.health_label(),
            "health_check": ("PASSING" if stats.check_healthy else "FAILING") if self._checked else None,
            "ejected_until": None if ejected_for is None else round(time.time() + ejected_for, 3),
            "ejected_for_s": ejected_for,
            "times_ejected": tally.times_ejected,
            "unreachable_for_s": max(0.0, stats.unreachable_until - now) or None,
            "rtt_estimate_s": self.rtt_estimate(now),
            "in_flight": stats.in_flight,
            "pending": stats.pending,
            "calls": stats.total,
            "failures": stats.failures,
            "last_latency_s": stats.last_latency_s,
            "recent_failures": round(self.recent_failures(now), 3),
            "pushed_back_for_s": max(0.0, stats.pushed_back_until - now) or None,
            "load_report": stats.load.describe(now),
            "metadata": dict(self.spec.metadata),
        }

    def __repr__(self) -> str:
        s = self.stats
        return (f"<EndpointState {self.cluster}/{self.address} w={self.weight} zone={self.zone!r} "
                f"{self.health_label()} in_flight={s.in_flight} total={s.total} failures={s.failures}"
                f"{' ejected' if s.outlier.ejected_until is not None else ''}>")
