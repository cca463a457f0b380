"""Failure penalties: pure maths, time passed in (FailurePenalty in resources.proto).

An endpoint that answered UNAVAILABLE or RESOURCE_EXHAUSTED carries a count of such
answers, each weighing exp(-age / decay): (count, at) is the count as of time `at`,
read at `now` as count x exp(-(now - at) / decay). It is what keeps a balancer that
prefers fast endpoints from preferring one that fails fast (a failure answered in
microseconds looks like a very fast endpoint), the way linkerd2-proxy's
failure-aware balancer adds a decaying penalty to the endpoint's cost (PR 4537).
The balancers decide what the count costs (balancer/peak_ewma.py, least_request.py).
"""

from __future__ import annotations

import math

# The statuses that mean "this endpoint cannot take the call now" (gRFC A6's
# pushback statuses; Envoy's retriable-status defaults for overload).
UNAVAILABLE = 14
RESOURCE_EXHAUSTED = 8


def penalized(grpc_status: int | None) -> bool:
    return grpc_status == UNAVAILABLE or grpc_status == RESOURCE_EXHAUSTED


def current(count: float, at: float, now: float, decay: float) -> float:
    """The count at `now`, decayed since `at`."""
    elapsed = now - at
    if count == 0.0 or elapsed <= 0.0:
        return count
    return count * math.exp(-elapsed / decay)


def add_failure(count: float, at: float, now: float, decay: float) -> float:
    """The count at `now` after one more failure."""
    return current(count, at, now, decay) + 1.0
