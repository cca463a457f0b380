"""RING_HASH: consistent hashing of the route's hash_policy header value.

Each endpoint owns points on a 64-bit ring in proportion to its weight; a call
whose key hashes to h goes to the owner of the first point at or after h
(wrapping). The same key reaches the same endpoint while the endpoint set is
unchanged, and removing one of N endpoints moves only the keys it owned, about
1/N (Karger et al., 1997). A call without a key (the header absent, or the
route has no hash_policy) goes to a random point: weighted random.

How many points: every endpoint gets `points_per_weight x weight` points,
where points_per_weight is fixed by the ring's minimum size (minimum_ring_size,
at least 1024): while the total weight is at most RING_CAP / minimum, each unit
of weight gets `minimum` points, so removing an endpoint does not add points to
the survivors. (Envoy instead scales a fixed-size ring, so the survivors'
extra points steal keys from each other: removing one of 4 then moves about 37%
of the keys instead of 25%.) Past that, the ring is held near RING_CAP points,
and removing one of N changes the others' share by about 1/N.

Hashes: BLAKE2b, read as 64-bit integers, for ring points (eight per hash of
address "#" block) and for keys (BLAKE2b-64): stable across processes and
Python versions (never Python's hash()).
A pick is one BLAKE2b of the key plus a bisect: O(log n) in C.
Concurrency: the ring is immutable; pick() never awaits.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct
from typing import TYPE_CHECKING

from meshgrpc.config.specs import ClusterSpec
from meshgrpc.proxy.balancer.explanation import PickExplanation
from meshgrpc.proxy.balancer.single import SinglePicker

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.endpoint import EndpointState

RING_CAP = 16384  # most points for a ring whose total weight is small (see above)


def key_hash(data: bytes) -> int:
    """The 64-bit ring position of `data`."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


_EIGHT = struct.Struct("<8Q")


def ring_points(address: str, count: int) -> list[int]:
    """`count` ring positions of `address`: BLAKE2b-512 of "address#block", read as
    eight 64-bit positions per block (one hash call per eight points)."""
    prefix = address.encode() + b"#"
    points: list[int] = []
    for block in range((count + 7) // 8):
        points.extend(_EIGHT.unpack(hashlib.blake2b(prefix + str(block).encode(), digest_size=64).digest()))
    return points[:count]


def points_per_endpoint(weights: list[int], minimum: int) -> list[int]:
    """How many ring points each weight gets (see the module docstring)."""
    g = math.gcd(*weights)
    units = [w // g for w in weights]
    total = sum(units)
    cap = max(RING_CAP, minimum)
    if total * minimum <= cap:
        return [u * minimum for u in units]
    if total <= cap:
        per = max(math.ceil(minimum / total), cap // total)
        return [u * per for u in units]
    return [max(1, round(u * cap / total)) for u in units]  # huge weights: scale down


def build(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...], env: PickerEnv):
    if len(endpoints) == 1:
        return SinglePicker(endpoints[0])
    return RingHashPicker(endpoints, cluster.ring_hash.minimum_ring_size, env.rng.random)


class RingHashPicker:
    __slots__ = ("_hashes", "_owners", "_size", "_random", "_endpoints")

    def __init__(self, endpoints: tuple[EndpointState, ...], minimum: int, random) -> None:
        points = []
        counts = points_per_endpoint([e.weight for e in endpoints], minimum)
        for index, (e, count) in enumerate(zip(endpoints, counts)):
            points.extend((h, index) for h in ring_points(e.address, count))
        points.sort()  # equal hashes (2^-64 odds) fall to the lower index: still deterministic
        self._hashes = [h for h, _ in points]
        self._owners = tuple(endpoints[i] for _, i in points)
        self._size = len(points)
        self._random = random
        self._endpoints = endpoints

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        if hash_key is None:
            return self._owners[int(self._random() * self._size)]
        return self._owners[self._point(hash_key)]

    def _point(self, hash_key: bytes) -> int:
        """The index of the first ring point at or after the key's hash (wrapping)."""
        i = bisect.bisect_left(self._hashes, key_hash(hash_key))
        return i if i < self._size else 0

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        if hash_key is None:
            chosen = self._owners[int(self._random() * self._size)]
            return PickExplanation(chosen, f"no hash key (the route's hash header is absent): {chosen.address} "
                                   "owns a ring point drawn at random")
        chosen = self._owners[self._point(hash_key)]
        return PickExplanation(chosen, f"the key hashes to {key_hash(hash_key):#018x}; the first of the ring's "
                               f"{self._size} points at or after it belongs to {chosen.address}")

    @property
    def size(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"<RingHashPicker endpoints={len(self._endpoints)} points={self._size}>"
