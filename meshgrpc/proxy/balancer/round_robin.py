"""ROUND_ROBIN: smooth weighted round robin as an earliest-deadline-first schedule.

Endpoint i with weight w_i is due at (k + phase_i) / w_i for its k-th pick; picks
go in deadline order, ties to the heavier endpoint, then to config order. The
phase staggers endpoints of equal weight across the period: the j-th of m such
endpoints starts at (j + 1/2) / m. So weights 3:1 give A A B A, never A A A B,
and 10:1:1 gives runs of at most 5, never 10: no endpoint takes a burst (the
property nginx's smooth WRR has, at O(log n) rather than O(n) per pick).

The schedule is periodic with sum(w) / gcd(w) picks per cycle. When the cycle
is at most `MAX_CYCLE` picks it is computed once at build time and a pick is a
tuple index (O(1)); longer cycles run the EDF heap live (O(log n) per pick).
Each picker starts at a random point of its cycle (injected rng) so proxies
that load the same config do not all hit the same endpoint first.

Concurrency: pick() never awaits; it is called from the event loop thread only.
The cursor is the picker's private mutable state; a config change builds a new
picker, it never rewinds or patches this one.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from typing import TYPE_CHECKING

from meshgrpc.config.specs import ClusterSpec
from meshgrpc.proxy.balancer.explanation import PickExplanation

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.endpoint import EndpointState

# Longest cycle precomputed: 8192 references is 64 KiB and a few ms to build.
MAX_CYCLE = 8192


def build(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...],
          env: PickerEnv) -> CyclePicker | EdfPicker:
    weights = [e.weight for e in endpoints]
    cycle = sum(weights) // math.gcd(*weights)
    if cycle <= MAX_CYCLE:
        return CyclePicker(schedule(endpoints, cycle), env.rng.randrange(cycle))
    return EdfPicker(endpoints, skip=env.rng.randrange(len(endpoints)))


def schedule(endpoints: tuple[EndpointState, ...], count: int) -> tuple[EndpointState, ...]:
    """The first `count` picks of the EDF schedule."""
    picker = EdfPicker(endpoints)
    return tuple(picker.pick() for _ in range(count))


class CyclePicker:
    """Replays a precomputed cycle of the schedule: one index and one increment."""

    __slots__ = ("_schedule", "_size", "_cursor")

    def __init__(self, cycle: tuple[EndpointState, ...], start: int = 0) -> None:
        self._schedule = cycle
        self._size = len(cycle)
        self._cursor = start % self._size

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        i = self._cursor
        self._cursor = i + 1 if i + 1 < self._size else 0
        return self._schedule[i]

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        chosen = self._schedule[self._cursor]
        return PickExplanation(chosen, f"{chosen.address} is next in the weighted round-robin cycle "
                               f"(position {self._cursor + 1} of {self._size})")

    def __repr__(self) -> str:
        return f"<CyclePicker cycle={self._size} cursor={self._cursor}>"


class EdfPicker:
    """The schedule run live on a heap of (deadline, -weight, index, numerator).

    Deadlines are kept as integer fractions (2mk + 2j + 1) / (2mw) and divided
    once per pick: IEEE division rounds correctly, so equal rationals give equal
    floats and ties break the same way in every cycle."""

    __slots__ = ("_heap", "_endpoints", "_denominators", "_steps")

    def __init__(self, endpoints: tuple[EndpointState, ...], skip: int = 0,
                 weights: tuple[int, ...] | None = None) -> None:
        """`weights`: positive integers, one per endpoint (default: their config weights)."""
        self._endpoints = endpoints
        weights = weights if weights is not None else tuple(e.weight for e in endpoints)
        peers = Counter(weights)
        seen: Counter[int] = Counter()
        self._denominators, self._steps, self._heap = [], [], []
        for i, w in enumerate(weights):
            m, j = peers[w], seen[w]
            seen[w] += 1
            self._denominators.append(2 * m * w)
            self._steps.append(2 * m)
            self._heap.append(((2 * j + 1) / (2 * m * w), -w, i, 2 * j + 1))
        heapq.heapify(self._heap)
        for _ in range(skip):
            self.pick()

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        _, neg_weight, i, numerator = self._heap[0]
        numerator += self._steps[i]
        heapq.heapreplace(self._heap, (numerator / self._denominators[i], neg_weight, i, numerator))
        return self._endpoints[i]

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        chosen = self._endpoints[self._heap[0][2]]
        scores = {self._endpoints[i].address: deadline for deadline, _, i, _ in self._heap}
        return PickExplanation(chosen, f"{chosen.address} is due first in the weighted round-robin schedule",
                               scores, "the endpoint's next deadline in the schedule; earliest wins")

    def __repr__(self) -> str:
        return f"<EdfPicker endpoints={len(self._endpoints)}>"
