"""PEAK_EWMA (the default): power of two choices on expected latency.

Two distinct endpoints are drawn at random and the call goes to the one with the
lower cost = (rtt_estimate + recent_failures x penalty) x (pending + 1) / weight
(ties to the first draw), as in linkerd2-proxy's balancer (tower's PeakEwma, with
the failure penalty of linkerd2-proxy PR 4537) and Finagle's P2C-PeakEWMA:
- rtt_estimate is the endpoint's peak-EWMA round trip (meshgrpc/proxy/ewma.py),
  read at the injected clock's now, so an endpoint that stopped getting calls
  because it was slow decays back into contention and is tried again;
- recent_failures is the decayed count of its UNAVAILABLE / RESOURCE_EXHAUSTED
  answers (meshgrpc/proxy/penalty.py) and `penalty` the cluster's
  failure_penalty.penalty: an endpoint failing fast would otherwise look fastest;
- pending counts the endpoint's calls still waiting for their first response
  (EndpointState.on_first_response), so a long stream does not weigh on an
  endpoint once it has answered;
- weight scales the cost: a weight-2 endpoint looks half as expensive. Under
  concurrency this splits load about by weight; with one call at a time and
  equal estimates the heavier endpoint wins every pair it is in.
An endpoint the server pushed back (EndpointState.pushed_back) costs infinity
until its time is up; when both draws are pushed back, pushed_back.py chooses.

The estimates live in EndpointStats and survive config rebuilds; the picker
holds only the endpoints, their inverse weights and the decay constants.
Concurrency: pick() never awaits and runs on the event loop thread only; it
reads stats that the relay updates on that same thread, and writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshgrpc.config.specs import ClusterSpec, FailurePenaltySpec
from meshgrpc.proxy import penalty
from meshgrpc.proxy.balancer.explanation import PickExplanation
from meshgrpc.proxy.balancer.p2c import INF, choose, explain_pair, two_distinct
from meshgrpc.proxy.balancer.single import SinglePicker
from meshgrpc.proxy.ewma import current

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.endpoint import EndpointState

def build(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...], env: PickerEnv):
    if len(endpoints) == 1:
        return SinglePicker(endpoints[0])
    return PeakEwmaPicker(endpoints, cluster.peak_ewma.decay, env.rng.random, env.clock, cluster.failure_penalty)


class PeakEwmaPicker:
    __slots__ = ("_endpoints", "_stats", "_inverse_weights", "_n", "_decay", "_random", "_clock",
                 "_penalty", "_penalty_decay")

    def __init__(self, endpoints: tuple[EndpointState, ...], decay: float, random, clock,
                 failure_penalty: FailurePenaltySpec = FailurePenaltySpec()) -> None:
        self._endpoints = endpoints
        self._stats = tuple(e.stats for e in endpoints)
        self._inverse_weights = tuple(1.0 / e.weight for e in endpoints)
        self._n = len(endpoints)
        self._decay = decay
        self._random = random
        self._clock = clock
        self._penalty = failure_penalty.penalty
        self._penalty_decay = failure_penalty.decay

    def cost(self, i: int, now: float) -> float:
        s = self._stats[i]
        if s.pushed_back_until > now:
            return INF
        rtt = current(s.rtt, s.rtt_at, now, self._decay)
        if s.penalty:
            rtt += self._penalty * penalty.current(s.penalty, s.penalty_at, now, self._penalty_decay)
        return rtt * (s.pending + 1) * self._inverse_weights[i]

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        i, j = two_distinct(self._n, self._random)
        return choose(self._endpoints, i, j, self._clock(), self.cost)

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        i, j = two_distinct(self._n, self._random)
        now = self._clock()
        scores = [self.cost(k, now) for k in range(self._n)]
        chosen = choose(self._endpoints, i, j, now, self.cost)
        return explain_pair(self._endpoints, scores, i, j, self._endpoints.index(chosen), ("cost = (rtt estimate + penalty x recent failures) x (pending + 1) / weight, "
                            "seconds; lower wins; pushed back: inf"))

    def __repr__(self) -> str:
        return f"<PeakEwmaPicker endpoints={self._n} decay={self._decay:g}s>"
