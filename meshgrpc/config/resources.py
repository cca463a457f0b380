"""The mesh's resource types: their type URLs, message classes, and how each
resource is named. Four are on the sidecars' discovery stream (TYPE_ORDER):
clusters, endpoint sets, route configs and the authorization policies their
inbound side enforces (meshgrpc/proxy/inbound.py); listeners, the targets of
proxyless gRPC clients, are stored and managed like them (MESH_TYPES) but reach
clients only as Envoy resources (meshgrpc/proxyless/)."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshapi.v1 import management_pb2, resources_pb2

CLUSTER = "type.googleapis.com/meshapi.v1.Cluster"
ENDPOINTS = "type.googleapis.com/meshapi.v1.EndpointSet"
ROUTES = "type.googleapis.com/meshapi.v1.RouteConfig"
LISTENER = "type.googleapis.com/meshapi.v1.Listener"
AUTHZ = "type.googleapis.com/meshapi.v1.AuthorizationPolicy"

# The sidecars' discovery stream. Make-before-break: a push sends clusters and
# endpoints (and policies, which nothing references) before the routes that use them.
TYPE_ORDER = (CLUSTER, ENDPOINTS, ROUTES, AUTHZ)
# Every type a MeshConfig holds: what the control plane validates, stores and serves.
MESH_TYPES = (CLUSTER, ENDPOINTS, ROUTES, LISTENER, AUTHZ)

MESSAGE_CLASS = {
    CLUSTER: resources_pb2.Cluster,
    ENDPOINTS: resources_pb2.EndpointSet,
    ROUTES: resources_pb2.RouteConfig,
    LISTENER: resources_pb2.Listener,
    AUTHZ: resources_pb2.AuthorizationPolicy,
}

# MeshConfig field holding each type, and the management API's kind for it.
MESH_FIELD = {CLUSTER: "clusters", ENDPOINTS: "endpoints", ROUTES: "routes", LISTENER: "listeners",
              AUTHZ: "authorization_policies"}
KIND = {
    CLUSTER: management_pb2.CLUSTER,
    ENDPOINTS: management_pb2.ENDPOINTS,
    ROUTES: management_pb2.ROUTE,
    LISTENER: management_pb2.LISTENER,
    AUTHZ: management_pb2.AUTHORIZATION_POLICY,
}
TYPE_OF_KIND = {kind: type_url for type_url, kind in KIND.items()}
SHORT_NAME = {CLUSTER: "clusters", ENDPOINTS: "endpoints", ROUTES: "routes", LISTENER: "listeners",
              AUTHZ: "authorization_policies"}


def resource_name(resource: Message) -> str:
    """A resource's name: endpoint sets are named by their cluster."""
    if isinstance(resource, resources_pb2.EndpointSet):
        return resource.cluster
    return resource.name


def by_name(mesh: resources_pb2.MeshConfig, type_url: str) -> dict[str, Message]:
    """The resources of one type in a MeshConfig, keyed by name."""
    return {resource_name(r): r for r in getattr(mesh, MESH_FIELD[type_url])}


def pack(resource: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(resource)
    return packed


def unpack(type_url: str, packed: any_pb2.Any) -> Message:
    """Decodes one Any of the given type; raises ValueError when the type differs."""
    if packed.type_url != type_url:
        raise ValueError(f"resource of type {packed.type_url!r} in a {type_url!r} response")
    message = MESSAGE_CLASS[type_url]()
    packed.Unpack(message)
    return message
