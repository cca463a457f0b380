"""What a backend reports about its load, kept as calls come and go: pure, time
passed in, safe to call from a sync server's handler threads (one lock, held for a
few attribute updates).

- `rif`: calls started and not finished (requests in flight, Prequal's signal);
- `latency_ms`: Prequal's latency estimate at the current rif (LatencyByRif): what
  a call arriving now may expect, so it rises with a queue at once rather than
  after the slow calls have finished;
- qps and eps: calls and failed calls finished per second over the last `window`
  seconds (two buckets, the older one weighed by how much of it is still in the
  window: a sliding count without a timestamp per call);
- cpu_utilization: this process's (cpu.py);
- application_utilization: what the application sets (`set_utilization`), the
  figure gRFC A58 weighs by when it is set;
- any other named metric the application sets (`set_named`).
`pause()` stops reports (no trailer, nothing on the OOB stream) until `resume()`,
e.g. while a backend warms up or drains, so balancers do not weigh it by figures
that are not, or no longer, its own; the counting goes on.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from typing import Callable

from xds.data.orca.v3.orca_load_report_pb2 import OrcaLoadReport

from meshgrpc import orca_wire
from meshgrpc.orca.cpu import ProcessCpu


class SlidingRate:
    """Events per second over the last `window` seconds, from two buckets."""

    __slots__ = ("_window", "_start", "_current", "_previous")

    def __init__(self, window: float, now: float) -> None:
        self._window = window
        self._start = now
        self._current = self._previous = 0

    def add(self, now: float) -> None:
        self._roll(now)
        self._current += 1

    def rate(self, now: float) -> float:
        self._roll(now)
        left = 1.0 - (now - self._start) / self._window  # share of the previous bucket still in the window
        return (self._current + self._previous * left) / self._window

    def _roll(self, now: float) -> None:
        passed = now - self._start
        if passed >= self._window:
            self._previous = self._current if passed < 2 * self._window else 0
            self._current = 0
            self._start = now - passed % self._window


class LatencyByRif:
    """Prequal's latency estimate (Wydrowski et al., NSDI 2024, §4): the median
    latency of recent calls that arrived when as many others were in flight as now.
    Calls are kept by their rif at arrival, the last `samples` per level, levels
    above `max_rif` together. A level without samples is estimated from the nearest
    one that has them, scaled by (rif + 1) / (its rif + 1): each call ahead adds
    about as much again (a queue of equal calls)."""

    __slots__ = ("_levels", "_max_rif")

    def __init__(self, samples: int = 16, max_rif: int = 64) -> None:
        self._levels = [deque(maxlen=samples) for _ in range(max_rif + 1)]
        self._max_rif = max_rif

    def add(self, rif_at_arrival: int, seconds: float) -> None:
        self._levels[min(rif_at_arrival, self._max_rif)].append(seconds)

    def estimate(self, rif: int) -> float | None:
        """Seconds a call arriving at `rif` may expect; None before any call finished."""
        level = min(rif, self._max_rif)
        for distance in range(self._max_rif + 1):
            for known in (level - distance, level + distance):
                if 0 <= known <= self._max_rif and self._levels[known]:
                    return statistics.median(self._levels[known]) * (level + 1) / (known + 1)
        return None


class LoadRecorder:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, window: float = 1.0,
                 latency_samples: int = 16, cpu: ProcessCpu | None = None) -> None:
        now = clock()
        self._clock = clock
        self._lock = threading.Lock()
        self._latency = LatencyByRif(latency_samples)
        self._calls = SlidingRate(window, now)
        self._errors = SlidingRate(window, now)
        self._cpu = cpu if cpu is not None else ProcessCpu(clock=clock)
        self._utilization = 0.0
        self._named: dict[str, float] = {}
        self._paused = False
        self.in_flight = 0

    # -- the interceptor's side ---------------------------------------------------------

    def started(self) -> tuple[float, int]:
        """A call began; returns (its start time, the calls in flight it found) for `finished`."""
        with self._lock:
            found = self.in_flight
            self.in_flight += 1
        return self._clock(), found

    def finished(self, started: tuple[float, int], ok: bool) -> None:
        now = self._clock()
        started_at, found = started
        with self._lock:
            self.in_flight -= 1
            self._latency.add(found, now - started_at)
            self._calls.add(now)
            if not ok:
                self._errors.add(now)

    # -- the application's side ---------------------------------------------------------

    def set_utilization(self, value: float) -> None:
        """The application's own utilization figure (0-1, or above when overloaded)."""
        self._utilization = max(0.0, float(value))

    def set_named(self, name: str, value: float) -> None:
        """A named metric sent with every report (`rif` and `latency_ms` are measured)."""
        self._named[name] = float(value)

    def qps(self) -> float:
        """Calls finished per second, as the reports say (e.g. to derive a utilization)."""
        with self._lock:
            return self._calls.rate(self._clock())

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    # -- reports ----------------------------------------------------------------------

    def report(self) -> OrcaLoadReport | None:
        """The report to send now; None while paused."""
        if self._paused:
            return None
        now = self._clock()
        with self._lock:
            rif = self.in_flight
            latency = self._latency.estimate(rif)
            qps, eps = self._calls.rate(now), self._errors.rate(now)
        named = {**self._named, orca_wire.RIF: float(rif)}
        if latency is not None:
            named[orca_wire.LATENCY_MS] = latency * 1000.0
        return OrcaLoadReport(cpu_utilization=self._cpu.utilization(), application_utilization=self._utilization,
                              rps_fractional=qps, eps=eps, named_metrics=named)

    def __repr__(self) -> str:
        return f"<LoadRecorder in_flight={self.in_flight} utilization={self._utilization:g}>"
