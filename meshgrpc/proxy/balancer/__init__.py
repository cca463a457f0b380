"""Balancing policies: one module per policy, each a factory of immutable pickers.

The contract every policy implements (after grpc-go's balancer.Picker):
- `build(cluster, endpoints, env) -> Picker` runs when config changes. `endpoints`
  is a non-empty tuple of usable EndpointState (health already filtered by the
  cluster); the picker may precompute anything from it and from the Cluster's
  tuning fields. A new config means a new picker, never a patched one.
- `Picker.pick(hash_key: bytes | None) -> EndpointState | None` runs once per call.
  It never awaits, never blocks, takes no lock and costs O(1) or O(log n). It is
  called from the event loop thread only, so a picker may keep a cursor or other
  private mutable state without synchronisation; endpoint counters it reads
  (in_flight, ...) are updated on the same thread.
- Time and randomness come from `env`, so tests run on a fake clock and seeded rng.

`POLICIES` maps each Cluster.LbPolicy to its factory. Until the balancing issue
lands every policy is served by smooth weighted round robin; each new policy
replaces its entry with its own module's `build`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import TYPE_CHECKING, Callable, Protocol

from meshapi.v1 import resources_pb2
from meshgrpc.proxy.balancer import round_robin

if TYPE_CHECKING:
    from meshgrpc.proxy.cluster import EndpointState

LbPolicy = resources_pb2.Cluster.LbPolicy


class Picker(Protocol):
    def pick(self, hash_key: bytes | None = None) -> EndpointState | None: ...


@dataclasses.dataclass(frozen=True)
class PickerEnv:
    """What a picker factory may draw on besides config: injected rng and clock."""

    rng: random.Random = dataclasses.field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic


PickerFactory = Callable[[resources_pb2.Cluster, "tuple[EndpointState, ...]", PickerEnv], Picker]

POLICIES: dict[int, PickerFactory] = {
    LbPolicy.LB_POLICY_UNSPECIFIED: round_robin.build,  # PEAK_EWMA once it exists
    LbPolicy.ROUND_ROBIN: round_robin.build,
    LbPolicy.LEAST_REQUEST: round_robin.build,
    LbPolicy.PEAK_EWMA: round_robin.build,
    LbPolicy.RING_HASH: round_robin.build,
    LbPolicy.RANDOM: round_robin.build,
}


class NoEndpoints:
    """The picker of a cluster with no usable endpoint: every pick is None."""

    __slots__ = ()

    def pick(self, hash_key: bytes | None = None) -> None:
        return None

    def __repr__(self) -> str:
        return "<NoEndpoints>"


NO_ENDPOINTS = NoEndpoints()


def build_picker(cluster: resources_pb2.Cluster, endpoints: tuple[EndpointState, ...],
                 env: PickerEnv) -> Picker:
    """The picker for `cluster` over its usable `endpoints`."""
    if not endpoints:
        return NO_ENDPOINTS
    factory = POLICIES.get(cluster.lb_policy, round_robin.build)
    return factory(cluster, endpoints, env)
