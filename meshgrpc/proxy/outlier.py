"""Passive outlier ejection: deciding which endpoints live traffic says are failing.

Decide, then act. `OutlierDetector` is built from a cluster's OutlierDetection
config and holds no state of its own: the per-endpoint counts live in an
`OutlierTally` inside each endpoint's stats (so they survive config rebuilds),
the detector reads them and returns a `Decision` ("eject these until then,
un-eject those"), and the cluster applies it (`Decision.apply`) and rebuilds its
picker. Nothing here awaits or reads a clock: `now` is passed in.

Semantics follow Envoy's outlier detection (and grpc-go's xds outlierdetection):
- A call fails when its gRPC status is one of `failure_status_codes` (default
  UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS); a call with no gRPC status at all
  (connection lost, no response) fails when the relay says it was not ok.
- Consecutive failures: reaching `consecutive_failures` ejects at once (the
  endpoint asks its cluster for a decision from the call path), not at the next
  sweep.
- Every `interval` a sweep un-ejects endpoints whose time is up, forgives one
  ejection of each endpoint that stayed in (the multiplier decays, grpc-go), and
  ejects on success rate (below mean - stdev_factor/1000 * stdev, among
  endpoints with at least `success_rate_request_volume` calls, when at least
  MIN_HOSTS qualify) and on failure percentage (at or above the threshold,
  among endpoints with at least FAILURE_PERCENTAGE_VOLUME calls, when at least
  MIN_HOSTS qualify). Then the interval's counts start again.
- Ejection time is base_ejection_time x times ejected, capped at
  max(base_ejection_time, max_ejection_time).
- At most max_ejection_percent of the cluster is ejected at once, except that
  one endpoint may always be ejected when none is (Envoy: "will eject at least
  one host regardless of the value"; grpc-java #9489 matched it).
Un-ejection is checked on every tick of the `OutlierTicker` (sub-second), so an
endpoint comes back when its time is up rather than at the next sweep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from typing import Callable, Iterable, Mapping

from meshgrpc.config.specs import OutlierSpec
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

# Envoy's defaults for fields our API does not expose.
MIN_HOSTS = 5  # success_rate_minimum_hosts / failure_percentage_minimum_hosts
FAILURE_PERCENTAGE_VOLUME = 50  # failure_percentage_request_volume


class OutlierTally:
    """One endpoint's counts for outlier detection. Lives in EndpointStats; written
    on the event loop thread by the call path (`OutlierDetector.record`) and by
    `Decision.apply`."""

    __slots__ = ("calls", "failures", "consecutive", "ejected_until", "times_ejected")

    def __init__(self) -> None:
        self.calls = 0  # this interval
        self.failures = 0  # this interval
        self.consecutive = 0  # failures in a row, across intervals
        self.ejected_until: float | None = None  # on the cluster's clock
        self.times_ejected = 0  # the backoff multiplier

    def __repr__(self) -> str:
        return (f"<OutlierTally calls={self.calls} failures={self.failures} consecutive={self.consecutive} "
                f"ejected_until={self.ejected_until} times_ejected={self.times_ejected}>")


@dataclasses.dataclass(frozen=True, slots=True)
class Ejection:
    address: str
    until: float
    times_ejected: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What the detector wants done; `apply` does it to the tallies."""

    eject: tuple[Ejection, ...] = ()
    uneject: tuple[str, ...] = ()
    forgive: tuple[str, ...] = ()  # endpoints whose multiplier drops by one
    reset_counts: bool = False  # a sweep: the next interval's counts start at zero

    @property
    def changes_membership(self) -> bool:
        """True when the set of ejected endpoints changes (the picker must be rebuilt)."""
        return bool(self.eject or self.uneject)

    def apply(self, tallies: Mapping[str, OutlierTally]) -> None:
        for address in self.uneject:
            t = tallies[address]
            t.ejected_until, t.consecutive = None, 0
        for e in self.eject:
            t = tallies[e.address]
            t.ejected_until, t.times_ejected, t.consecutive = e.until, e.times_ejected, 0
        for address in self.forgive:
            tallies[address].times_ejected -= 1
        if self.reset_counts:
            for t in tallies.values():
                t.calls = t.failures = 0


NOTHING = Decision()


@dataclasses.dataclass(frozen=True, slots=True)
class OutlierDetector(OutlierSpec):
    """Outlier decisions for one cluster's OutlierSpec (the fields and their
    defaults are the spec's). Immutable."""

    @classmethod
    def of(cls, spec: OutlierSpec) -> OutlierDetector:
        return cls(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(OutlierSpec)})

    # -- the call path ----------------------------------------------------------------

    def record(self, t: OutlierTally, ok: bool, grpc_status: int | None) -> bool:
        """Counts one finished call. True when the endpoint has just reached the
        consecutive-failure limit and is not ejected: the caller should then ask
        `on_consecutive_failures` for a decision."""
        failed = grpc_status in self.failure_codes if grpc_status is not None else not ok
        t.calls += 1
        if not failed:
            t.consecutive = 0
            return False
        t.failures += 1
        t.consecutive += 1
        limit = self.consecutive_failures
        return 0 < limit <= t.consecutive and t.ejected_until is None

    # -- decisions --------------------------------------------------------------------

    def on_consecutive_failures(self, tallies: Mapping[str, OutlierTally], address: str,
                                now: float) -> Decision:
        """Ejects `address` if it is at the consecutive-failure limit and the
        ejection budget allows."""
        t = tallies.get(address)
        limit = self.consecutive_failures
        if t is None or t.ejected_until is not None or not 0 < limit <= t.consecutive:
            return NOTHING
        ejected = sum(1 for x in tallies.values() if x.ejected_until is not None)
        if not self._room(ejected, len(tallies)):
            return NOTHING
        return Decision(eject=(self._ejection(address, t, now, "consecutive failures"),))

    def expired(self, tallies: Mapping[str, OutlierTally], now: float) -> Decision:
        """Only the un-ejections that are due (between sweeps)."""
        due = tuple(a for a, t in tallies.items() if t.ejected_until is not None and t.ejected_until <= now)
        return Decision(uneject=due) if due else NOTHING

    def sweep(self, tallies: Mapping[str, OutlierTally], now: float) -> Decision:
        """The interval's analysis: un-eject, forgive, then eject on consecutive
        failures, success rate and failure percentage, within the budget."""
        uneject = self.expired(tallies, now).uneject
        staying_out = [a for a, t in tallies.items() if t.ejected_until is not None and a not in uneject]
        in_rotation = {a: t for a, t in tallies.items() if t.ejected_until is None or a in uneject}
        ejected = len(staying_out)
        ejections = []
        for address, reason in self._outliers(in_rotation):
            if not self._room(ejected, len(tallies)):
                break
            ejections.append(self._ejection(address, tallies[address], now, reason))
            ejected += 1
        out = {e.address for e in ejections}
        forgive = tuple(a for a, t in tallies.items()
                        if t.ejected_until is None and t.times_ejected > 0 and a not in out)
        return Decision(eject=tuple(ejections), uneject=uneject, forgive=forgive, reset_counts=True)

    # -- rules ------------------------------------------------------------------------

    def _outliers(self, tallies: Mapping[str, OutlierTally]) -> Iterable[tuple[str, str]]:
        """(address, reason) of every endpoint some rule would eject, each once, in
        the cluster's endpoint order."""
        found: dict[str, str] = {}
        limit = self.consecutive_failures
        for a, t in tallies.items():
            if 0 < limit <= t.consecutive:
                found.setdefault(a, "consecutive failures")
        for a in self._low_success_rate(tallies):
            found.setdefault(a, "success rate")
        for a in self._high_failure_percentage(tallies):
            found.setdefault(a, "failure percentage")
        order = list(tallies)
        return sorted(found.items(), key=lambda item: order.index(item[0]))

    def _low_success_rate(self, tallies: Mapping[str, OutlierTally]) -> list[str]:
        if self.stdev_factor <= 0:
            return []
        volume = [(a, t) for a, t in tallies.items() if t.calls >= max(1, self.success_rate_volume)]
        if len(volume) < MIN_HOSTS:
            return []
        rates = [(t.calls - t.failures) / t.calls for _, t in volume]
        mean = sum(rates) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
        floor = mean - self.stdev_factor * stdev
        return [a for (a, _), r in zip(volume, rates) if r < floor]

    def _high_failure_percentage(self, tallies: Mapping[str, OutlierTally]) -> list[str]:
        threshold = self.failure_percentage_threshold
        if threshold is None:
            return []
        volume = [(a, t) for a, t in tallies.items() if t.calls >= FAILURE_PERCENTAGE_VOLUME]
        if len(volume) < MIN_HOSTS:
            return []
        return [a for a, t in volume if t.failures * 100 >= threshold * t.calls]

    def _room(self, ejected: int, total: int) -> bool:
        """May one more endpoint be ejected, `ejected` of `total` being out already?"""
        return ejected == 0 or (ejected + 1) * 100 <= self.max_ejection_percent * total

    def _ejection(self, address: str, t: OutlierTally, now: float, reason: str) -> Ejection:
        times = t.times_ejected + 1
        duration = min(self.base_ejection_time * times, max(self.base_ejection_time, self.max_ejection_time))
        return Ejection(address, now + duration, times, reason)


class OutlierTicker:
    """The timer that drives sweeps and un-ejections: calls `tick()` (in the proxy,
    `lambda: holder.current.clusters.tick()`) every `period` seconds on the event
    loop. Owns its task: `start()` in a running loop, `await stop()` on shutdown."""

    def __init__(self, tick: Callable[[], None], period: float = 0.25) -> None:
        self._tick = tick
        self._period = period
        self._task = OwnedTask("outlier-ticker", self._run)

    def start(self) -> None:
        self._task.start()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            self._tick()  # an exception here is a bug: let it end the task, loudly

    async def stop(self) -> None:
        await self._task.stop()

    def __repr__(self) -> str:
        return f"<OutlierTicker period={self._period} running={self._task.running}>"

