"""The draw behind power-of-two-choices balancing (Mitzenmacher, "The Power of Two
Choices in Randomized Load Balancing"): two distinct endpoints, uniformly at random.
Policies differ only in how they compare the two."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

from meshgrpc.proxy.balancer.explanation import PickExplanation


def two_distinct(n: int, random: Callable[[], float]) -> tuple[int, int]:
    """Two different indexes in [0, n) (n >= 2), every unordered pair equally likely."""
    i = int(random() * n)
    j = int(random() * (n - 1))
    if j >= i:
        j += 1
    return i, j


def explain_pair(endpoints: Sequence, scores: Sequence[float], i: int, j: int, chosen: int,
                 score: str) -> PickExplanation:
    """The explanation of one power-of-two-choices pick: drew i and j, took `chosen`."""
    a, b = endpoints[i].address, endpoints[j].address
    taken, other = (i, j) if chosen == i else (j, i)
    tie = " (a tie goes to the first drawn)" if scores[i] == scores[j] else ""
    why = (f"drew {a} and {b} at random (power of two choices); {endpoints[taken].address} scores "
           f"{scores[taken]:.6g} against {scores[other]:.6g}{tie}")
    return PickExplanation(endpoints[chosen], why, {e.address: s for e, s in zip(endpoints, scores)}, score, (a, b))
