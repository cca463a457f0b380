"""The proxy's clusters: for each, its endpoints and the picker that spreads calls
over them, built from config as one immutable ClusterSet and swapped whole.

What survives a rebuild: an endpoint's counters (in_flight, total, failures, last
latency) for the same (cluster, address), and a whole ClusterState (picker and
cursor included) when neither its Cluster nor its EndpointSet changed. Building
never touches the previous set, so a failed build leaves it exactly as it was.

Endpoints whose health_status is UNHEALTHY or DRAINING are listed (for /clusters
and the upstream pools: a draining endpoint finishes its calls) but never picked.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Iterator

from meshapi.v1 import resources_pb2
from meshgrpc.errors import ConfigError, FieldError
from meshgrpc.proxy.balancer import Picker, PickerEnv, build_picker

HealthStatus = resources_pb2.Endpoint.HealthStatus
_NOT_PICKED = frozenset({HealthStatus.UNHEALTHY, HealthStatus.DRAINING})


class EndpointStats:
    """Counters of one (cluster, address), carried across rebuilds. Updated on the
    event loop thread only."""

    __slots__ = ("in_flight", "total", "failures", "last_latency_s")

    def __init__(self) -> None:
        self.in_flight = 0
        self.total = 0
        self.failures = 0
        self.last_latency_s: float | None = None


class EndpointState:
    """One endpoint of one cluster: its config (fixed for this build) and its stats
    (shared with the previous and next builds).

    The relay calls `on_start()` when a call goes to it and `on_finish(ok,
    latency_s)` exactly once when that call ends."""

    __slots__ = ("cluster", "address", "host", "port", "weight", "zone", "health", "metadata", "stats")

    def __init__(self, cluster: str, endpoint: resources_pb2.Endpoint, stats: EndpointStats) -> None:
        self.cluster = cluster
        self.address = endpoint.address
        self.host, self.port = split_address(endpoint.address)
        self.weight = endpoint.weight.value if endpoint.HasField("weight") else 1
        self.zone = endpoint.zone
        self.health = endpoint.health_status
        self.metadata = dict(endpoint.metadata)
        self.stats = stats

    @property
    def usable(self) -> bool:
        return self.health not in _NOT_PICKED and self.weight > 0

    @property
    def in_flight(self) -> int:
        return self.stats.in_flight

    @property
    def total(self) -> int:
        return self.stats.total

    @property
    def failures(self) -> int:
        return self.stats.failures

    @property
    def last_latency_s(self) -> float | None:
        return self.stats.last_latency_s

    def on_start(self) -> None:
        stats = self.stats
        stats.in_flight += 1
        stats.total += 1

    def on_finish(self, ok: bool, latency_s: float) -> None:
        stats = self.stats
        stats.in_flight -= 1
        if not ok:
            stats.failures += 1
        stats.last_latency_s = latency_s

    def describe(self) -> dict:
        stats = self.stats
        return {
            "address": self.address,
            "weight": self.weight,
            "zone": self.zone,
            "health": health_name(self.health),
            "in_flight": stats.in_flight,
            "total": stats.total,
            "failures": stats.failures,
            "last_latency_s": stats.last_latency_s,
        }

    def __repr__(self) -> str:
        s = self.stats
        return (f"<EndpointState {self.cluster}/{self.address} w={self.weight} zone={self.zone!r} "
                f"{health_name(self.health)} in_flight={s.in_flight} total={s.total} failures={s.failures}>")


class ClusterState:
    """One cluster for one config: endpoints, the usable ones, and their picker."""

    __slots__ = ("name", "config", "endpoint_set", "endpoints", "usable", "_picker")

    def __init__(self, config: resources_pb2.Cluster, endpoint_set: resources_pb2.EndpointSet | None,
                 endpoints: tuple[EndpointState, ...], picker: Picker) -> None:
        self.name = config.name
        self.config = config
        self.endpoint_set = endpoint_set
        self.endpoints = endpoints
        self.usable = tuple(e for e in endpoints if e.usable)
        self._picker = picker

    @classmethod
    def build(cls, config: resources_pb2.Cluster, endpoint_set: resources_pb2.EndpointSet | None,
              previous: ClusterState | None, env: PickerEnv) -> ClusterState:
        """A new state, or `previous` itself when its config and endpoints are unchanged."""
        if previous is not None and previous.config == config and previous.endpoint_set == endpoint_set:
            return previous
        old = {e.address: e.stats for e in previous.endpoints} if previous is not None else {}
        endpoints = _endpoints(config.name, endpoint_set, old)
        usable = tuple(e for e in endpoints if e.usable)
        return cls(config, endpoint_set, endpoints, build_picker(config, usable, env))

    def pick(self, hash_key: bytes | None = None) -> EndpointState | None:
        """The endpoint for the next call, or None when none is usable. Never awaits."""
        return self._picker.pick(hash_key)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "lb_policy": resources_pb2.Cluster.LbPolicy.Name(self.config.lb_policy),
            "picker": type(self._picker).__name__,
            "usable": len(self.usable),
            "endpoints": [e.describe() for e in self.endpoints],
        }

    def __repr__(self) -> str:
        return (f"<ClusterState {self.name!r} endpoints={len(self.endpoints)} "
                f"usable={len(self.usable)} picker={self._picker!r}>")


class ClusterSet:
    """Every cluster of one config, by name. Immutable once built; swap it whole."""

    __slots__ = ("_clusters", "_addresses")

    def __init__(self, clusters: dict[str, ClusterState]) -> None:
        self._clusters = clusters
        self._addresses = frozenset(e.address for c in clusters.values() for e in c.endpoints)

    @classmethod
    def build(cls, clusters: dict[str, resources_pb2.Cluster],
              endpoint_sets: dict[str, resources_pb2.EndpointSet],
              previous: ClusterSet | None = None, *, rng: random.Random | None = None,
              clock: Callable[[], float] = time.monotonic) -> ClusterSet:
        """Builds from (validated) config, reusing what `previous` holds for
        unchanged clusters and endpoints. Raises ConfigError on an unusable
        endpoint address, leaving `previous` untouched."""
        env = PickerEnv(rng=rng or random.Random(), clock=clock)
        prev = previous._clusters if previous is not None else {}
        return cls({
            name: ClusterState.build(config, endpoint_sets.get(name), prev.get(name), env)
            for name, config in clusters.items()
        })

    def get(self, name: str) -> ClusterState | None:
        return self._clusters.get(name)

    def addresses(self) -> frozenset[str]:
        """Every endpoint address of every cluster, usable or not (for the upstream pools)."""
        return self._addresses

    def __iter__(self) -> Iterator[ClusterState]:
        return iter(self._clusters.values())

    def __len__(self) -> int:
        return len(self._clusters)

    def describe(self) -> dict:
        """Plain data for the admin /clusters endpoint."""
        return {"clusters": [c.describe() for c in self._clusters.values()]}

    snapshot = describe

    def __repr__(self) -> str:
        inner = ", ".join(f"{c.name}:{len(c.usable)}/{len(c.endpoints)}" for c in self._clusters.values())
        return f"<ClusterSet [{inner}]>"


def _endpoints(cluster: str, endpoint_set: resources_pb2.EndpointSet | None,
               old: dict[str, EndpointStats]) -> tuple[EndpointState, ...]:
    if endpoint_set is None:
        return ()
    result: dict[str, EndpointState] = {}
    errors = []
    for i, endpoint in enumerate(endpoint_set.endpoints):
        if endpoint.address in result:
            continue  # the validator rejects duplicates; first one wins if one slips by
        try:
            stats = old.get(endpoint.address) or EndpointStats()
            result[endpoint.address] = EndpointState(cluster, endpoint, stats)
        except ValueError as e:
            errors.append(FieldError(f"endpoints[{cluster}].endpoints[{i}].address", str(e)))
    if errors:
        raise ConfigError(errors)
    return tuple(result.values())


def split_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; raises ValueError otherwise."""
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
    else:
        host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port with a port in 1-65535")
    return host, int(port)


def health_name(status: int) -> str:
    """The health shown on /clusters; unset counts as HEALTHY (resources.proto)."""
    return "HEALTHY" if status == HealthStatus.HEALTH_STATUS_UNSPECIFIED else HealthStatus.Name(status)
