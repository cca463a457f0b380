"""Turns discovery updates into the proxy's state: validate, build, swap.

Each update replaces one resource type. The candidate config (the update plus the
other types in effect) goes through the same validator the control plane uses;
if it breaks a rule the update is rejected with every error (the discovery client
NACKs with that text) and nothing changes. Otherwise each resource becomes its
typed spec (config/specs; a resource whose message is unchanged keeps the spec
built for it before, so a push that touches one endpoint set converts one), and a
new immutable routing table and cluster set are built from the specs and swapped
in with one reference, so calls in flight finish on what they started with.
"""

from __future__ import annotations

import logging
import random
from typing import Callable, Protocol

from google.protobuf.message import Message

from meshapi.v1 import resources_pb2
from meshgrpc.config import resources, specs
from meshgrpc.config.validate import validate_mesh
from meshgrpc.errors import ConfigError
from meshgrpc.proxy.balancer.prequal import ProbeSink
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.proxy.router import RouteTable
from meshgrpc.proxy.state import ProxyState, StateHolder

log = logging.getLogger(__name__)


class AddressSync(Protocol):
    def sync(self, addresses: set[str]) -> None: ...


class ProxyConfigurator:
    """Owns the resources in effect and rebuilds the proxy's state from them."""

    def __init__(self, holder: StateHolder, route_config_name: str, pools: AddressSync, *,
                 local_zone: str = "", on_nack: Callable[[], None] = lambda: None,
                 on_applied: Callable[[ProxyState], None] = lambda state: None,
                 rng: random.Random | None = None, prober: ProbeSink | None = None) -> None:
        self._holder = holder
        self._route_config_name = route_config_name
        self._pools = pools
        self._local_zone = local_zone
        self._on_nack = on_nack
        self._on_applied = on_applied
        self._rng = rng or random.Random()
        self._prober = prober
        self.resources: dict[str, dict[str, Message]] = {t: {} for t in resources.TYPE_ORDER}
        self.versions: dict[str, str] = {}
        self._specs = SpecCache()

    @property
    def ready(self) -> bool:
        """True once every type has arrived and the route config this proxy serves exists."""
        return len(self.versions) == len(resources.TYPE_ORDER) and \
            self._route_config_name in self.resources[resources.ROUTES]

    def on_update(self, type_url: str, version: str, items: list[Message]) -> None:
        """Applies one discovery response, or raises ConfigError leaving everything as it was."""
        candidate = {**self.resources, type_url: {resources.resource_name(r): r for r in items}}
        try:
            state = self._build(candidate, {**self.versions, type_url: version})
        except ConfigError:
            self._on_nack()
            raise
        self.resources, self.versions = candidate, state.versions
        self._holder.swap(state)
        self._pools.sync(state.clusters.addresses())
        self._on_applied(state)
        log.info("applied %s version %s (%d resources)", type_url.rsplit(".", 1)[-1], version, len(items))

    def mesh(self, candidate: dict[str, dict[str, Message]] | None = None) -> resources_pb2.MeshConfig:
        """The resources (in effect, or a candidate set) as one MeshConfig."""
        candidate = candidate or self.resources
        return resources_pb2.MeshConfig(
            clusters=candidate[resources.CLUSTER].values(),
            endpoints=candidate[resources.ENDPOINTS].values(),
            routes=candidate[resources.ROUTES].values(),
            authorization_policies=candidate[resources.AUTHZ].values(),
        )

    def _build(self, candidate: dict[str, dict[str, Message]], versions: dict[str, str]) -> ProxyState:
        errors = validate_mesh(self.mesh(candidate))
        if errors:
            raise ConfigError(errors)
        built = self._specs.build(candidate)
        route_config = built[resources.ROUTES].get(self._route_config_name)
        routes = RouteTable.compile(route_config, rng=self._rng) if route_config is not None else None
        previous = self._holder.current.clusters
        clusters = ClusterSet.build(built[resources.CLUSTER], built[resources.ENDPOINTS], previous,
                                    rng=self._rng, local_zone=self._local_zone, prober=self._prober)
        policies = tuple(built[resources.AUTHZ][n] for n in sorted(built[resources.AUTHZ]))
        return ProxyState(routes=routes, clusters=clusters, versions=versions, policies=policies)


_SPEC_OF = {
    resources.CLUSTER: specs.cluster_spec,
    resources.ENDPOINTS: specs.endpoint_specs,
    resources.ROUTES: specs.route_config_spec,
    resources.AUTHZ: specs.authorization_policy_spec,
}


class SpecCache:
    """Specs of the resources last built, reused while a resource's message is
    unchanged (protobuf equality runs in C; building 10,000 endpoint specs does not)."""

    def __init__(self) -> None:
        self._built: dict[tuple[str, str], tuple[Message, object]] = {}

    def build(self, candidate: dict[str, dict[str, Message]]) -> dict[str, dict[str, object]]:
        """type_url -> name -> spec for `candidate`; raises ConfigError for an
        endpoint address that does not parse. Forgets resources no longer present."""
        built: dict[tuple[str, str], tuple[Message, object]] = {}
        errors = []
        for type_url, by_name in candidate.items():
            for name, message in by_name.items():
                known = self._built.get((type_url, name))
                if known is not None and known[0] == message:
                    built[(type_url, name)] = known
                    continue
                try:
                    built[(type_url, name)] = (message, _SPEC_OF[type_url](message))
                except ConfigError as e:
                    errors.extend(e.errors)
        if errors:
            raise ConfigError(errors)
        self._built = built
        out: dict[str, dict[str, object]] = {t: {} for t in candidate}
        for (type_url, name), (_, spec) in built.items():
            out[type_url][name] = spec
        return out
