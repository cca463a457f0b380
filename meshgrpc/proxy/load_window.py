"""What one endpoint's attempts did since the last load report: a fixed-size
latency histogram and counts by gRPC status, updated on the call path and taken
(read and reset) by the load reporter.

The histogram has log-spaced buckets, three per octave from 100 µs to about
33 s (56 buckets, plus one above), so a percentile read from it is within about
13% of the true value: the bucket's geometric middle is reported (the HdrHistogram
idea at a coarser precision; enough to tell a 1 ms endpoint from a 25 ms one). On
the call path an attempt costs one bisect over the bucket bounds (C) and two list
increments; nothing is allocated. Memory is fixed: two short lists per endpoint.
"""

from __future__ import annotations

import bisect
import math

# Upper bounds (seconds) of the buckets: 100 µs x 2^(k/3). Index len(BOUNDS) is "above".
BOUNDS: tuple[float, ...] = tuple(1e-4 * 2 ** (k / 3) for k in range(56))
BUCKETS = len(BOUNDS) + 1

# gRPC status codes 0..16 by number; slot 17 holds attempts that ended without one
# (plain HTTP/2, a reset, a connection lost before any status).
NO_STATUS = 17
STATUS_SLOTS = 18
_SLOT = {code: code for code in range(17)}

STATUS_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
                "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
                "NO_STATUS")


class LoadWindow:
    """The figures of one endpoint since the window was last taken. Updated on the
    event loop thread only (`record`, by EndpointState.on_finish)."""

    __slots__ = ("latency", "statuses", "failures")

    def __init__(self) -> None:
        self.latency = [0] * BUCKETS
        self.statuses = [0] * STATUS_SLOTS
        self.failures = 0

    def record(self, ok: bool, latency_s: float, grpc_status: int | None) -> None:
        self.latency[bisect.bisect_left(BOUNDS, latency_s)] += 1
        self.statuses[_SLOT.get(grpc_status, NO_STATUS)] += 1
        if not ok:
            self.failures += 1

    @property
    def calls(self) -> int:
        return sum(self.statuses)

    def by_status(self) -> dict[str, int]:
        """Attempts per status name, only the statuses seen."""
        return {STATUS_NAMES[i]: n for i, n in enumerate(self.statuses) if n}

    def percentile(self, q: float) -> float | None:
        """The latency below which a share `q` (0-1) of the window's attempts ended; None when empty."""
        return percentile(self.latency, q)

    def __repr__(self) -> str:
        return f"<LoadWindow calls={self.calls} failures={self.failures}>"


def percentile(counts: list[int], q: float) -> float | None:
    """The `q` quantile of a histogram over BOUNDS: the geometric middle of the
    bucket holding the ceil(q x n)-th smallest sample (n = total)."""
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return _middle(i)
    return _middle(len(counts) - 1)


def _middle(i: int) -> float:
    if i == 0:
        return BOUNDS[0] / 2 ** (1 / 6)
    if i >= len(BOUNDS):
        return BOUNDS[-1]  # above the last bound: reported as the bound itself
    return (BOUNDS[i - 1] * BOUNDS[i]) ** 0.5
