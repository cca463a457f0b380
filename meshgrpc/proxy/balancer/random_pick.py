"""RANDOM: each call goes to an endpoint drawn in proportion to its weight.

Equal weights draw an index directly (O(1)); unequal weights bisect a table of
cumulative weights (O(log n), in C). Randomness is the injected env.rng.
Concurrency: pick() never awaits; the picker has no mutable state at all.
"""

from __future__ import annotations

import bisect
import itertools
from typing import TYPE_CHECKING

from meshgrpc.config.specs import ClusterSpec
from meshgrpc.proxy.balancer.explanation import PickExplanation
from meshgrpc.proxy.balancer.single import SinglePicker

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.endpoint import EndpointState


def build(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...], env: PickerEnv):
    if len(endpoints) == 1:
        return SinglePicker(endpoints[0])
    if len({e.weight for e in endpoints}) == 1:
        return UniformPicker(endpoints, env.rng.random)
    return WeightedRandomPicker(endpoints, env.rng.random)


class UniformPicker:
    __slots__ = ("_endpoints", "_n", "_random")

    def __init__(self, endpoints: tuple[EndpointState, ...], random) -> None:
        self._endpoints, self._n, self._random = endpoints, len(endpoints), random

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        return self._endpoints[int(self._random() * self._n)]

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        return _drawn(self.pick(), "uniformly at random")

    def __repr__(self) -> str:
        return f"<UniformPicker endpoints={self._n}>"


class WeightedRandomPicker:
    __slots__ = ("_endpoints", "_cumulative", "_total", "_random")

    def __init__(self, endpoints: tuple[EndpointState, ...], random) -> None:
        # The last endpoint appears twice so a draw that rounds up to the total
        # still lands on a real endpoint without a branch (as router.py does).
        self._endpoints = endpoints + endpoints[-1:]
        self._cumulative = list(itertools.accumulate(e.weight for e in endpoints))
        self._total = float(self._cumulative[-1])
        self._random = random

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        return self._endpoints[bisect.bisect_right(self._cumulative, self._random() * self._total)]

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        return _drawn(self.pick(), "at random in proportion to the weights")

    def __repr__(self) -> str:
        return f"<WeightedRandomPicker endpoints={len(self._cumulative)} total_weight={self._total:g}>"


def _drawn(chosen: EndpointState, how: str) -> PickExplanation:
    return PickExplanation(chosen, f"{chosen.address} drawn {how}", drawn=(chosen.address,))
