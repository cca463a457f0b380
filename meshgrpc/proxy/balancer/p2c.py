"""The draw behind power-of-two-choices balancing (Mitzenmacher, "The Power of Two
Choices in Randomized Load Balancing"): two distinct endpoints, uniformly at random.
Policies differ only in how they compare the two: `choose` takes their cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable

from meshgrpc.proxy.balancer.explanation import PickExplanation
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


def choose(endpoints: tuple[EndpointState, ...], i: int, j: int, now: float,
           cost: Callable[[int, float], float]) -> EndpointState:
    """The cheaper of draws i and j (ties to the first). When both cost INF (both
    pushed back), pushed_back.py chooses from the whole set."""
    best = cost(i, now)
    other = cost(j, now)
    if other < best:
        i, best = j, other
    if best == INF:
        return first_available(endpoints, i, now)
    return endpoints[i]


def explain_pair(endpoints: Sequence, scores: Sequence[float], i: int, j: int, chosen: int,
                 score: str) -> PickExplanation:
    """The explanation of one power-of-two-choices pick: drew i and j, took `chosen`."""
    a, b = endpoints[i].address, endpoints[j].address
    drew = f"drew {a} and {b} at random (power of two choices); "
    if chosen not in (i, j):
        why = drew + f"both are pushed back, so {endpoints[chosen].address}, the next one that is not"
    else:
        taken, other = (i, j) if chosen == i else (j, i)
        tie = " (a tie goes to the first drawn)" if scores[i] == scores[j] else ""
        why = drew + f"{endpoints[taken].address} scores {scores[taken]:.6g} against {scores[other]:.6g}{tie}"
    return PickExplanation(endpoints[chosen], why, {e.address: s for e, s in zip(endpoints, scores)}, score, (a, b))
