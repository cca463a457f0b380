"""Balancing policies: one module per policy, each a factory of immutable pickers.

The contract every policy implements (after grpc-go's balancer.Picker):
- `build(cluster, endpoints, env) -> Picker` runs when config changes and when the
  set of endpoints to balance over changes (health checks, outlier ejection).
  `endpoints` is a non-empty tuple of EndpointState chosen by the cluster (the
  usable ones, or all eligible ones in panic mode); the picker may precompute
  anything from it and from the Cluster's tuning fields. A change means a new
  picker, never a patched one.
- `Picker.pick(hash_key: bytes | None) -> EndpointState | None` runs once per call.
  It never awaits, never blocks, takes no lock and costs O(1) or O(log n). It is
  called from the event loop thread only, so a picker may keep a cursor or other
  private mutable state without synchronisation; endpoint counters it reads
  (in_flight, ...) are updated on the same thread.
- Time and randomness come from `env`, so tests run on a fake clock and seeded rng;
  so does the proxy's prober (PREQUAL's probes), None where nothing probes.
- `Picker.explain(hash_key) -> PickExplanation` (explanation.py) says which endpoint
  pick() would return now and why, through the same decision code. It never moves
  a cursor or a schedule; a policy that draws at random draws once, from its own
  random source, as one call would. It is for `meshgrpc explain`, never the call path.
- Optionally, `Picker.describe() -> dict`: the picker's own state for /clusters
  (WRR's weights, PREQUAL's pool). Never on the call path.

`POLICIES` maps each Cluster.LbPolicy to its factory (one module per policy:
round_robin, least_request, peak_ewma, ring_hash, random_pick,
weighted_round_robin, prequal; single serves any policy with one endpoint). Which endpoints a picker gets is the cluster's
business: health, ejection, panic.py (balance over all when too few are usable)
and zones.py (prefer the proxy's own zone) run before the factory.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import TYPE_CHECKING, Callable, Protocol

from meshgrpc.config.specs import ClusterSpec
from meshgrpc.proxy.balancer import (
    least_request, peak_ewma, prequal, random_pick, ring_hash, round_robin, weighted_round_robin,
)
from meshgrpc.proxy.balancer.explanation import PickExplanation

if TYPE_CHECKING:
    from meshgrpc.proxy.endpoint import EndpointState


class Picker(Protocol):
    def pick(self, hash_key: bytes | None = None) -> EndpointState | None: ...

    def explain(self, hash_key: bytes | None = None) -> PickExplanation: ...


@dataclasses.dataclass(frozen=True)
class PickerEnv:
    """What a picker factory may draw on besides config: injected rng and clock,
    the proxy's own zone (--zone; "" = none) for the cluster's zone preference, and
    the proxy's prober for PREQUAL (prequal.ProbeSink; None: no probes are sent)."""

    rng: random.Random = dataclasses.field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    local_zone: str = ""
    prober: prequal.ProbeSink | None = None


PickerFactory = Callable[[ClusterSpec, "tuple[EndpointState, ...]", PickerEnv], Picker]

# Cluster.LbPolicy names (ClusterSpec.lb_policy; the spec maps UNSPECIFIED to its default).
POLICIES: dict[str, PickerFactory] = {
    "ROUND_ROBIN": round_robin.build,
    "LEAST_REQUEST": least_request.build,
    "PEAK_EWMA": peak_ewma.build,
    "RING_HASH": ring_hash.build,
    "RANDOM": random_pick.build,
    "WEIGHTED_ROUND_ROBIN": weighted_round_robin.build,
    "PREQUAL": prequal.build,
}


class NoEndpoints:
    """The picker of a cluster with no usable endpoint: every pick is None."""

    __slots__ = ()

    def pick(self, hash_key: bytes | None = None) -> None:
        return None

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        return PickExplanation(None, "no endpoint to balance over: the call would fail UNAVAILABLE")

    def __repr__(self) -> str:
        return "<NoEndpoints>"


NO_ENDPOINTS = NoEndpoints()


def build_picker(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...], env: PickerEnv) -> Picker:
    """The picker for `cluster` over its usable `endpoints`."""
    if not endpoints:
        return NO_ENDPOINTS
    return POLICIES[cluster.lb_policy](cluster, endpoints, env)
