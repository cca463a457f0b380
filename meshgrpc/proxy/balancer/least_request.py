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

Failures and pushback (FailurePenalty in resources.proto): an endpoint's load is
multiplied by (1 + recent_failures), the decayed count of its UNAVAILABLE /
RESOURCE_EXHAUSTED answers (meshgrpc/proxy/penalty.py), so an endpoint that fails
fast does not draw calls for having few in flight (failure_penalty.penalty 0s turns
this off); an endpoint the server pushed back is passed over until its time is up
(pushed_back.py when the choice has nothing else).

Concurrency: pick() never awaits and runs on the event loop thread only; the
EDF heap is the picker's private state. In-flight counts are read from the
endpoints' stats, updated by the relay on the same thread.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from meshgrpc.config.specs import ClusterSpec, FailurePenaltySpec
from meshgrpc.proxy import penalty
from meshgrpc.proxy.balancer.explanation import PickExplanation
from meshgrpc.proxy.balancer.p2c import INF, choose, explain_pair, two_distinct
from meshgrpc.proxy.balancer.single import SinglePicker

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.endpoint import EndpointState

def build(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...], env: PickerEnv):
    if len(endpoints) == 1:
        return SinglePicker(endpoints[0])
    if len({e.weight for e in endpoints}) == 1:
        return P2CLeastRequestPicker(endpoints, env.rng.random, env.clock, cluster.failure_penalty)
    return WeightedLeastRequestPicker(endpoints, cluster.least_request.active_request_bias, env.rng.random,
                                      env.clock, cluster.failure_penalty)


class Load:
    """An endpoint's load as both pickers weigh it: (in_flight + 1) x (1 + recent
    failures), or infinity while it is pushed back."""

    __slots__ = ("_penalized", "_decay")

    def __init__(self, failure_penalty: FailurePenaltySpec) -> None:
        self._penalized = failure_penalty.penalty > 0.0
        self._decay = failure_penalty.decay

    def of(self, s, now: float) -> float:
        if s.pushed_back_until > now:
            return INF
        load = s.in_flight + 1.0
        if s.penalty and self._penalized:
            load *= 1.0 + penalty.current(s.penalty, s.penalty_at, now, self._decay)
        return load


class P2CLeastRequestPicker:
    __slots__ = ("_endpoints", "_stats", "_n", "_random", "_clock", "_load")

    def __init__(self, endpoints: tuple[EndpointState, ...], random, clock,
                 failure_penalty: FailurePenaltySpec = FailurePenaltySpec()) -> None:
        self._endpoints = endpoints
        self._stats = tuple(e.stats for e in endpoints)
        self._n = len(endpoints)
        self._random = random
        self._clock = clock
        self._load = Load(failure_penalty)

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        i, j = two_distinct(self._n, self._random)
        return choose(self._endpoints, i, j, self._clock(), self.load)

    def load(self, i: int, now: float) -> float:
        return self._load.of(self._stats[i], now)

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        i, j = two_distinct(self._n, self._random)
        now = self._clock()
        scores = [self.load(k, now) for k in range(self._n)]
        chosen = choose(self._endpoints, i, j, now, self.load)
        return explain_pair(self._endpoints, scores, i, j, self._endpoints.index(chosen), "load = (calls in flight + 1) x (1 + recent failures); lower wins; pushed back: inf")

    def __repr__(self) -> str:
        return f"<P2CLeastRequestPicker endpoints={self._n}>"


class WeightedLeastRequestPicker:
    """EDF on a heap of (deadline, sequence, index); the sequence breaks ties in
    scheduling order, so equal deadlines never compare endpoints."""

    __slots__ = ("_endpoints", "_stats", "_weights", "_bias", "_heap", "_seq", "_clock", "_load")

    def __init__(self, endpoints: tuple[EndpointState, ...], bias: float, random, clock,
                 failure_penalty: FailurePenaltySpec = FailurePenaltySpec()) -> None:
        self._endpoints = endpoints
        self._stats = tuple(e.stats for e in endpoints)
        self._weights = tuple(float(e.weight) for e in endpoints)
        self._bias = bias
        self._clock = clock
        self._load = Load(failure_penalty)
        # A random phase per endpoint within its first period, so proxies that
        # load the same config do not all start on the same endpoint.
        self._heap = [(random() / w, i, i) for i, w in enumerate(self._weights)]
        heapq.heapify(self._heap)
        self._seq = len(endpoints)

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        now = self._clock()
        i = self._next(now)
        if self._stats[i].pushed_back_until > now:
            for _ in range(len(self._endpoints) - 1):  # take the next due that is not pushed back
                i = self._next(now)
                if self._stats[i].pushed_back_until <= now:
                    break
        return self._endpoints[i]

    def _next(self, now: float) -> int:
        deadline, _, i = self._heap[0]
        s = self._stats[i]
        load = s.in_flight + 1
        if s.penalty:
            load = min(self._load.of(s, now), 1e12)  # pushed back: rescheduled far out
        bias = self._bias
        if bias == 1.0:
            effective = self._weights[i] / load
        elif bias == 0.0:
            effective = self._weights[i]
        else:
            effective = self._weights[i] / load ** bias
        self._seq += 1
        heapq.heapreplace(self._heap, (deadline + 1.0 / effective, self._seq, i))
        return i

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        """The endpoint at the head of the schedule: the one pick() takes next."""
        deadline, _, i = self._heap[0]
        scores = {self._endpoints[k].address: d for d, _, k in self._heap}
        return PickExplanation(self._endpoints[i], f"{self._endpoints[i].address} is due first in the "
                               "earliest-deadline-first schedule (weights divided by load)", scores,
                               "the endpoint's next deadline in the schedule; earliest wins")

    def __repr__(self) -> str:
        return f"<WeightedLeastRequestPicker endpoints={len(self._endpoints)} bias={self._bias:g}>"
