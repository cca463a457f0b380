"""Shared by the balancer, outlier and health unit tests: a fake clock and real
EndpointStates built without a ClusterSet."""

from __future__ import annotations

import random

from meshapi.v1 import resources_pb2
from meshgrpc.config import specs
from meshgrpc.proxy.balancer import PickerEnv
from meshgrpc.proxy.endpoint import EndpointState, EndpointStats


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def endpoint(address: str, weight: int = 1, zone: str = "", *, clock: FakeClock,
             decay: float = 10.0, default_rtt: float = 0.030) -> EndpointState:
    """`address` may be a bare name: it becomes "name:1", and tests compare `.host`."""
    host = address.rpartition(":")[0] if ":" in address else address
    spec = specs.EndpointSpec(address if ":" in address else f"{address}:1", host, 1, weight=weight, zone=zone)
    return EndpointState("c", spec, EndpointStats(default_rtt, clock()), clock=clock, decay=decay)


def endpoints(*specs: tuple[str, int] | str, clock: FakeClock, **kw) -> tuple[EndpointState, ...]:
    return tuple(endpoint(s, clock=clock, **kw) if isinstance(s, str) else endpoint(*s, clock=clock, **kw)
                 for s in specs)


def env(clock: FakeClock, seed: int = 0) -> PickerEnv:
    return PickerEnv(rng=random.Random(seed), clock=clock)


def cluster(policy: str, **fields) -> specs.ClusterSpec:
    from google.protobuf import json_format
    return specs.cluster_spec(json_format.ParseDict({"name": "c", "lb_policy": policy, **fields},
                                                    resources_pb2.Cluster()))


def shares(picks, names) -> dict[str, float]:
    addresses = [p.host for p in picks]
    return {n: addresses.count(n) / len(addresses) for n in names}
