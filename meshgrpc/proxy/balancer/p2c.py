"""The draw behind power-of-two-choices balancing (Mitzenmacher, "The Power of Two
Choices in Randomized Load Balancing"): two distinct endpoints, uniformly at random.
Policies differ only in how they compare the two: `choose` takes their cost."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from meshgrpc.proxy.balancer.pushed_back import first_available

if TYPE_CHECKING:
    from meshgrpc.proxy.endpoint import EndpointState

INF = math.inf  # the cost of an endpoint its server pushed back


def two_distinct(n: int, random: Callable[[], float]) -> tuple[int, int]:
    """Two different indexes in [0, n) (n >= 2), every unordered pair equally likely."""
    i = int(random() * n)
    j = int(random() * (n - 1))
    if j >= i:
        j += 1
    return i, j


def choose(endpoints: tuple[EndpointState, ...], random: Callable[[], float], now: float,
           cost: Callable[[int, float], float]) -> EndpointState:
    """The cheaper of two random draws (ties to the first). When both cost INF (both
    pushed back), pushed_back.py chooses from the whole set."""
    i, j = two_distinct(len(endpoints), random)
    best = cost(i, now)
    other = cost(j, now)
    if other < best:
        i, best = j, other
    if best == INF:
        return first_available(endpoints, i, now)
    return endpoints[i]
