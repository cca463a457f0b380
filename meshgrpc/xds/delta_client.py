"""A proxy's side of the incremental (delta) discovery stream, with per-proxy
scoping: the proxy subscribes only to the clusters and endpoint sets its route
configs reach (Istio's Sidecar-resource idea), so its memory and its share of
pushes stay flat as the mesh grows.

`DeltaSubscriptions` is the sans-IO part (what is subscribed, held, parked; which
requests to send); `DeltaClient` runs it on DiscoveryClient's transport-agnostic
stream and reconnect loop (backoff, failover between control-plane replicas). On
reconnect each type's first request carries the versions the proxy holds, so
nothing unchanged is resent.

Make-before-break on the proxy's side: a route config that reaches clusters the
proxy does not hold yet is parked (not applied, not answered) while the proxy
subscribes to them; once every one of them has been answered for clusters and
endpoints (sent, or reported absent), the route is applied and ACKed. Clusters
the new routes no longer reach are unsubscribed and dropped only after that.
`on_update` always receives a type's whole held set, as with state of the world.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, status_pb2

from meshapi.v1 import discovery_pb2
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER, unpack
from meshgrpc.errors import ConfigError
from meshgrpc.xds.client import DiscoveryClient, DiscoveryStream
from meshgrpc.xds.delta_state import WILDCARD
from meshgrpc.xds.snapshot import route_refs

log = logging.getLogger(__name__)

METHOD = "/meshapi.v1.Discovery/DeltaResources"
SCOPED = (CLUSTER, ENDPOINTS)


@dataclasses.dataclass(frozen=True)
class Received:
    """A decoded delta response: the type's whole held set once it is applied."""

    type_url: str
    version: str
    nonce: str
    held: dict[str, tuple[str, Message]]   # name -> (resource version, resource)
    removed: frozenset[str]

    def items(self) -> list[Message]:
        return [message for _, message in self.held.values()]


class DeltaSubscriptions:
    """Subscriptions and held resources per type. `subscriptions` maps type URL to
    names, [] meaning every resource; with `scoped`, clusters and endpoint sets
    follow the clusters the held (and parked) route configs reach."""

    def __init__(self, subscriptions: Mapping[str, list[str]], scoped: bool) -> None:
        self.scoped = scoped and ROUTES in subscriptions
        self.wanted: dict[str, set[str]] = {t: set(names) or {WILDCARD} for t, names in subscriptions.items()}
        if self.scoped:
            for type_url in SCOPED:
                self.wanted[type_url] = set()
        self.held: dict[str, dict[str, tuple[str, Message]]] = {t: {} for t in self.wanted}
        self.absent: dict[str, set[str]] = {t: set() for t in self.wanted}
        self.versions: dict[str, str] = {}
        self.parked: Received | None = None

    def first_requests(self, node: discovery_pb2.Node) -> list[discovery_pb2.DeltaDiscoveryRequest]:
        """One per type (TYPE_ORDER), the node on the first, resuming what is held."""
        requests = []
        for type_url in (t for t in TYPE_ORDER if t in self.wanted):
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=sorted(self.wanted[type_url]),
                initial_resource_versions={n: v for n, (v, _) in self.held[type_url].items()})
            if not requests:
                request.node.CopyFrom(node)
            requests.append(request)
        self.parked = None   # a parked response belongs to the stream that sent it
        return requests

    def decode(self, response: discovery_pb2.DeltaDiscoveryResponse) -> Received:
        """The held set `response` leads to. Raises ConfigError when it cannot be decoded."""
        type_url = response.type_url
        if type_url not in self.wanted:
            raise ConfigError([f"response of unsubscribed type {type_url!r}"])
        held = dict(self.held[type_url])
        removed = frozenset(response.removed_resources)
        for name in removed:
            held.pop(name, None)
        try:
            for resource in response.resources:
                held[resource.name] = (resource.version, unpack(type_url, resource.resource))
        except (ValueError, DecodeError) as e:
            raise ConfigError([f"undecodable resource: {e}"]) from None
        return Received(type_url, response.system_version_info, response.nonce, held, removed)

    def reach(self, routes: Received | None = None) -> set[str]:
        """Clusters the route configs reach (those of `routes` if given, else held)."""
        held = routes.held if routes is not None else self.held.get(ROUTES, {})
        return set().union(*(route_refs(m) for _, m in held.values())) if held else set()

    def needs_parking(self, received: Received) -> bool:
        """A route response reaching clusters not yet answered for both types."""
        if not self.scoped or received.type_url != ROUTES:
            return False
        return not self._answered(self.reach(received))

    def _answered(self, clusters: set[str]) -> bool:
        return all(clusters <= set(self.held[t]) | self.absent[t] for t in SCOPED)

    def widen(self, clusters: set[str]) -> list[discovery_pb2.DeltaDiscoveryRequest]:
        """Subscribes to the clusters (and their endpoint sets) not subscribed yet."""
        requests = []
        for type_url in SCOPED:
            new = clusters - self.wanted[type_url]
            if new:
                self.wanted[type_url] |= new
                requests.append(discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, resource_names_subscribe=sorted(new)))
        return requests

    def narrow(self) -> tuple[list[discovery_pb2.DeltaDiscoveryRequest], list[str]]:
        """Unsubscribes from what the held routes no longer reach; returns the
        requests and the types whose held set shrank."""
        reached, requests, shrunk = self.reach(), [], []
        for type_url in SCOPED:
            gone = self.wanted[type_url] - reached
            if not gone:
                continue
            self.wanted[type_url] -= gone
            self.absent[type_url] -= gone
            if any(self.held[type_url].pop(n, None) is not None for n in sorted(gone)):
                shrunk.append(type_url)
            requests.append(discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_unsubscribe=sorted(gone)))
        return requests, shrunk

    def unchanged(self, received: Received) -> bool:
        """True when the response changes nothing the proxy has already applied."""
        return received.type_url in self.versions and received.held == self.held[received.type_url]

    def accept(self, received: Received) -> discovery_pb2.DeltaDiscoveryRequest:
        """Records the response as applied; returns its ACK."""
        self.held[received.type_url] = received.held
        absent = self.absent[received.type_url]
        absent |= {n for n in received.removed if n in self.wanted[received.type_url]}
        absent -= set(received.held)
        self.versions[received.type_url] = received.version
        return discovery_pb2.DeltaDiscoveryRequest(type_url=received.type_url, response_nonce=received.nonce)

    @staticmethod
    def reject(received: Received, error: ConfigError) -> discovery_pb2.DeltaDiscoveryRequest:
        """The NACK of a response the proxy could not apply (it keeps what it held)."""
        return discovery_pb2.DeltaDiscoveryRequest(
            type_url=received.type_url, response_nonce=received.nonce,
            error_detail=status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(error)))

    def ready_parked(self) -> Received | None:
        """The parked route response, once everything it reaches is answered."""
        if self.parked is not None and self._answered(self.reach(self.parked)):
            parked, self.parked = self.parked, None
            return parked
        return None

    def __repr__(self) -> str:
        held = {t.rsplit(".", 1)[-1]: len(h) for t, h in self.held.items()}
        return f"DeltaSubscriptions(scoped={self.scoped}, held={held}, parked={self.parked is not None})"


class DeltaClient(DiscoveryClient):
    """DiscoveryClient's interface and reconnect loop on the delta stream.
    `scoped` (the default) subscribes to the clusters the route configs reach."""

    def __init__(self, *args, scoped: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.subs = DeltaSubscriptions(self.subscriptions, scoped)
        self.versions = self.subs.versions

    METHOD = METHOD
    RESPONSE = discovery_pb2.DeltaDiscoveryResponse

    async def _serve(self, stream: DiscoveryStream) -> None:
        for request in self.subs.first_requests(self.node):
            await stream.send(request)
        await self._accepted(stream)
        while (response := await stream.recv()) is not None:
            for request in self._handle(response):
                await stream.send(request)

    def _handle(self, response: discovery_pb2.DeltaDiscoveryResponse) -> list[discovery_pb2.DeltaDiscoveryRequest]:
        """Applies one response; returns the requests it calls for, in order."""
        try:
            received = self.subs.decode(response)
        except ConfigError as e:
            log.warning("rejected %s version %s: %s", response.type_url, response.system_version_info, e)
            return [discovery_pb2.DeltaDiscoveryRequest(
                type_url=response.type_url, response_nonce=response.nonce,
                error_detail=status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(e)))]
        if self.subs.needs_parking(received):
            self.subs.parked = received
            return self.subs.widen(self.subs.reach(received))
        requests = [self._apply(received)]
        if received.type_url in SCOPED and (parked := self.subs.ready_parked()) is not None:
            requests.append(self._apply(parked))
            received = parked
        if received.type_url == ROUTES and self.subs.scoped:
            requests += self._rescope()
        return requests

    def _apply(self, received: Received) -> discovery_pb2.DeltaDiscoveryRequest:
        if self.subs.unchanged(received):   # e.g. the answers to a resumed stream: nothing to apply
            return self.subs.accept(received)
        try:
            self.on_update(received.type_url, received.version, received.items())
        except ConfigError as e:
            log.warning("rejected %s version %s: %s", received.type_url, received.version, e)
            return self.subs.reject(received, e)
        return self.subs.accept(received)

    def _rescope(self) -> list[discovery_pb2.DeltaDiscoveryRequest]:
        """After a route change: widen to what it reaches, drop what it no longer does."""
        requests = self.subs.widen(self.subs.reach())
        narrowed, shrunk = self.subs.narrow()
        for type_url in sorted(shrunk, key=(ENDPOINTS, CLUSTER).index):   # endpoint sets before their clusters
            self.on_update(type_url, self.subs.versions.get(type_url, ""),
                           [m for _, m in self.subs.held[type_url].values()])
        return requests + narrowed
