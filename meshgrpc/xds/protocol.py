"""What differs between the state-of-the-world discovery streams one session loop
serves: meshgrpc's own (sidecar proxies, meshapi.v1) and Envoy's xDS v3 ADS
(proxyless gRPC clients, meshgrpc/proxyless/). Both have per-type versions,
nonces, ACK/NACK and make-before-break ordering; they differ in type URLs, the
wire numbers of the response's fields, what an empty subscription means and
whether a reconnecting client's version is trusted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from meshapi.v1 import discovery_pb2
from meshgrpc.config.resources import AUTHZ, CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from meshgrpc.xds import wire


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Make-before-break order (ordering.py): `first` types go, in order, before
    `routes`, whose resources reference resources of the `referenced` types by
    name (a route's clusters); those are kept while held routes still use them."""

    first: tuple[str, ...]
    routes: str
    referenced: frozenset[str]


@dataclasses.dataclass(frozen=True, slots=True)
class NodeInfo:
    """Who is on a stream, as status shows it."""

    id: str
    zone: str
    client: str


@dataclasses.dataclass(frozen=True, slots=True)
class DiscoveryProtocol:
    type_urls: tuple[str, ...]
    layout: Layout
    response: wire.ResponseFields
    # The DiscoveryRequest message class the server decodes.
    request_class: type
    # True: a request naming no resources subscribes to all of them (meshgrpc's
    # wildcard). False: it subscribes to none, and only "*" means all (xDS
    # protocol, "How the client specifies what resources to return"; gRPC clients
    # always name their resources).
    empty_is_wildcard: bool
    # True: the version_info of a stream's first request is what the client holds,
    # and nothing is resent when it is current. False: a new stream is always sent
    # the current state (gRPC clients expect an answer to every subscription).
    resume: bool
    node_info: Callable[[object], NodeInfo]


def _mesh_node(node: discovery_pb2.Node) -> NodeInfo:
    return NodeInfo(node.id, node.zone, "meshgrpc proxy")


MESH = DiscoveryProtocol(
    type_urls=TYPE_ORDER,
    layout=Layout(first=(CLUSTER, ENDPOINTS, AUTHZ), routes=ROUTES, referenced=frozenset({CLUSTER, ENDPOINTS})),
    response=wire.MESH_RESPONSE,
    request_class=discovery_pb2.DiscoveryRequest,
    empty_is_wildcard=True,
    resume=True,
    node_info=_mesh_node,
)
