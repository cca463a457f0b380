"""LEAST_REQUEST: fewest calls in flight, by power of two choices.

Equal weights: draw two distinct endpoints at random and take the one with
fewer calls in flight (ties to the first draw). Two choices instead of the
global minimum is what keeps proxies that share endpoints from herding onto
the same one, at O(1) (Mitzenmacher, "The Power of Two Choices in Randomized
Load Balancing", 2001).

Unequal weights: an earliest-deadline-first schedule whose weights follow load
(Envoy's weighted least request): an endpoint's effective weight is
weight / (in_flight + 1) ^ active_request_bias, read each time the endpoint is
rescheduled. With nothing in flight the traffic splits exactly by weight (a
weight-3 endpoint takes 3 of every 4 calls, interleaved); a loaded endpoint is
rescheduled further out. Bias 0 is plain weighted round robin; the default 1.0
divides by the load. O(log n) per pick.

Concurrency: pick() never awaits and runs on the event loop thread only; the
EDF heap is the picker's private state. In-flight counts are read from the
endpoints' stats, updated by the relay on the same thread.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from meshgrpc.config.specs import ClusterSpec
from meshgrpc.proxy.balancer.explanation import PickExplanation
from meshgrpc.proxy.balancer.p2c import explain_pair, two_distinct
from meshgrpc.proxy.balancer.single import SinglePicker

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.endpoint import EndpointState

def build(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...], env: PickerEnv):
    if len(endpoints) == 1:
        return SinglePicker(endpoints[0])
    if len({e.weight for e in endpoints}) == 1:
        return P2CLeastRequestPicker(endpoints, env.rng.random)
    return WeightedLeastRequestPicker(endpoints, cluster.least_request.active_request_bias, env.rng.random)


class P2CLeastRequestPicker:
    __slots__ = ("_endpoints", "_stats", "_n", "_random")

    def __init__(self, endpoints: tuple[EndpointState, ...], random) -> None:
        self._endpoints = endpoints
        self._stats = tuple(e.stats for e in endpoints)
        self._n = len(endpoints)
        self._random = random

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        i, j = two_distinct(self._n, self._random)
        return self._endpoints[self._fewer(i, j)]

    def _fewer(self, i: int, j: int) -> int:
        stats = self._stats
        return j if stats[j].in_flight < stats[i].in_flight else i

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        i, j = two_distinct(self._n, self._random)
        return explain_pair(self._endpoints, [float(s.in_flight) for s in self._stats], i, j, self._fewer(i, j),
                            "calls in flight; fewer wins")

    def __repr__(self) -> str:
        return f"<P2CLeastRequestPicker endpoints={self._n}>"


class WeightedLeastRequestPicker:
    """EDF on a heap of (deadline, sequence, index); the sequence breaks ties in
    scheduling order, so equal deadlines never compare endpoints."""

    __slots__ = ("_endpoints", "_stats", "_weights", "_bias", "_heap", "_seq")

    def __init__(self, endpoints: tuple[EndpointState, ...], bias: float, random) -> None:
        self._endpoints = endpoints
        self._stats = tuple(e.stats for e in endpoints)
        self._weights = tuple(float(e.weight) for e in endpoints)
        self._bias = bias
        # A random phase per endpoint within its first period, so proxies that
        # load the same config do not all start on the same endpoint.
        self._heap = [(random() / w, i, i) for i, w in enumerate(self._weights)]
        heapq.heapify(self._heap)
        self._seq = len(endpoints)

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        deadline, _, i = self._heap[0]
        load = self._stats[i].in_flight + 1
        bias = self._bias
        if bias == 1.0:
            effective = self._weights[i] / load
        elif bias == 0.0:
            effective = self._weights[i]
        else:
            effective = self._weights[i] / load ** bias
        self._seq += 1
        heapq.heapreplace(self._heap, (deadline + 1.0 / effective, self._seq, i))
        return self._endpoints[i]

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        """The endpoint at the head of the schedule: the one pick() takes next."""
        deadline, _, i = self._heap[0]
        scores = {self._endpoints[k].address: d for d, _, k in self._heap}
        return PickExplanation(self._endpoints[i], f"{self._endpoints[i].address} is due first in the "
                               "earliest-deadline-first schedule (weights divided by load)", scores,
                               "the endpoint's next deadline in the schedule; earliest wins")

    def __repr__(self) -> str:
        return f"<WeightedLeastRequestPicker endpoints={len(self._endpoints)} bias={self._bias:g}>"
