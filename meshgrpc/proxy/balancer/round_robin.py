"""ROUND_ROBIN: smooth weighted round robin as an earliest-deadline-first schedule.

Endpoint i with weight w_i is due at (k + 1/2) / w_i for its k-th pick; picks go
in deadline order, ties to the heavier endpoint, then to config order. Starting
each endpoint half a period in spreads picks evenly: weights 3:1 give A A B A,
never A A A B, so no endpoint takes a burst (the property nginx's smooth WRR
has, at O(log n) rather than O(n) per pick).

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
from typing import TYPE_CHECKING

from meshapi.v1 import resources_pb2

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.cluster import EndpointState

# Longest cycle precomputed: 8192 references is 64 KiB and a few ms to build.
MAX_CYCLE = 8192


def build(cluster: resources_pb2.Cluster, endpoints: tuple[EndpointState, ...],
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

    def __repr__(self) -> str:
        return f"<CyclePicker cycle={self._size} cursor={self._cursor}>"


class EdfPicker:
    """The schedule run live on a heap of (deadline, -weight, index, k).

    Deadlines are (2k + 1) / (2w): IEEE division rounds correctly, so equal
    rationals give equal floats and ties break the same way every cycle."""

    __slots__ = ("_heap", "_endpoints")

    def __init__(self, endpoints: tuple[EndpointState, ...], skip: int = 0) -> None:
        self._endpoints = endpoints
        self._heap = [(0.5 / e.weight, -e.weight, i, 0) for i, e in enumerate(endpoints)]
        heapq.heapify(self._heap)
        for _ in range(skip):
            self.pick()

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        _, neg_weight, i, k = self._heap[0]
        k += 1
        heapq.heapreplace(self._heap, ((2 * k + 1) / (-2 * neg_weight), neg_weight, i, k))
        return self._endpoints[i]

    def __repr__(self) -> str:
        return f"<EdfPicker endpoints={len(self._endpoints)}>"
