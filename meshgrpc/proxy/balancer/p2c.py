"""The draw behind power-of-two-choices balancing (Mitzenmacher, "The Power of Two
Choices in Randomized Load Balancing"): two distinct endpoints, uniformly at random.
Policies differ only in how they compare the two."""

from __future__ import annotations

from typing import Callable


def two_distinct(n: int, random: Callable[[], float]) -> tuple[int, int]:
    """Two different indexes in [0, n) (n >= 2), every unordered pair equally likely."""
    i = int(random() * n)
    j = int(random() * (n - 1))
    if j >= i:
        j += 1
    return i, j
