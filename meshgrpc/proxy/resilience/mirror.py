"""Traffic mirroring (Envoy's request_mirror_policies): a share of a route's calls
is copied to a shadow cluster, fire-and-forget.

`MirrorPolicy.admit()` runs once per call: the draw (`percent`, from the proxy's
random source) and the bound on copies in flight for the route (`max_in_flight`;
over it calls are simply not mirrored), so a shadow that stops answering costs a
bounded amount of memory, never the real call's time.
"""

from __future__ import annotations

from typing import Callable

from meshgrpc.config.specs import MirrorSpec


class MirrorPolicy:
    __slots__ = ("spec", "_random", "in_flight", "mirrored", "skipped")

    def __init__(self, spec: MirrorSpec, random: Callable[[], float]) -> None:
        self.spec = spec
        self._random = random
        self.in_flight = 0  # copies running now
        self.mirrored = 0  # copies started (metrics)
        self.skipped = 0  # calls drawn but not mirrored: max_in_flight reached (metrics)

    def admit(self) -> bool:
        """Whether this call gets a copy (and, if so, counts it in flight)."""
        if self._random() * 100.0 >= self.spec.percent:
            return False
        if self.in_flight >= self.spec.max_in_flight:
            self.skipped += 1
            return False
        self.in_flight += 1
        self.mirrored += 1
        return True

    def __repr__(self) -> str:
        return f"<MirrorPolicy {self.spec.cluster} {self.spec.percent:g}% in_flight={self.in_flight}>"
