"""Builders shared by the xds unit tests: small meshes and a simulated proxy."""

from __future__ import annotations

from meshapi.v1 import discovery_pb2, resources_pb2 as r
from meshgrpc.config.resources import AUTHZ, CLUSTER, ENDPOINTS, MESH_TYPES, ROUTES, pack
from meshgrpc.xds.ordering import next_response
from meshgrpc.xds.snapshot import Snapshot
from meshgrpc.xds.stream_state import StreamState

SHORT = {CLUSTER: "C", ENDPOINTS: "E", ROUTES: "R", AUTHZ: "A"}
# What these tests' streams subscribe to: the types make-before-break orders (a
# stream subscribing to policies too is sent them before routes: test_xds_ordering.py).
ORDERED = (CLUSTER, ENDPOINTS, ROUTES)


def mesh(clusters: list[str], routes: dict[str, list[str]] | None = None) -> r.MeshConfig:
    """Clusters with one endpoint each; `routes` maps a route config name to the
    clusters it splits traffic over (default: one route config using the first cluster)."""
    if routes is None:
        routes = {"default": clusters[:1]} if clusters else {}
    return r.MeshConfig(
        clusters=[r.Cluster(name=c) for c in clusters],
        endpoints=[r.EndpointSet(cluster=c, endpoints=[r.Endpoint(address=f"10.0.0.{i + 1}:80")])
                   for i, c in enumerate(clusters)],
        routes=[route_config(name, used) for name, used in routes.items()])


def route_config(name: str, clusters: list[str]) -> r.RouteConfig:
    action = (r.RouteAction(cluster=clusters[0]) if len(clusters) == 1 else
              r.RouteAction(weighted_clusters=[r.ClusterWeight(name=c, weight=1) for c in clusters]))
    return r.RouteConfig(name=name, virtual_hosts=[r.VirtualHost(
        name="all", domains=["*"], routes=[r.Route(match=r.RouteMatch(prefix="/"), route=action)])])


def snap(version: str, clusters: list[str], routes: dict[str, list[str]] | None = None) -> Snapshot:
    return Snapshot.from_mesh(mesh(clusters, routes), {t: version for t in MESH_TYPES})


def subscribe(state: StreamState, versions: dict[str, str] | None = None,
              names: dict[str, list[str]] | None = None, types=ORDERED) -> None:
    for t in types:
        state.on_request(discovery_pb2.DiscoveryRequest(
            type_url=t, version_info=(versions or {}).get(t, ""), resource_names=(names or {}).get(t, [])))


def converge(state: StreamState, snapshot: Snapshot, nack: set[str] = frozenset(), limit: int = 20):
    """Plays a proxy that answers each response at once (NACKing the types in
    `nack`), until the server has nothing more to send. Returns what was sent as
    (type, version, sorted names)."""
    sent = []
    for _ in range(limit):
        plan = next_response(state.types, snapshot)
        if plan is None:
            return sent
        nonce = state.next_nonce()
        state.types[plan.type_url].record_sent(plan.version, nonce, plan.names, plan.resources, plan.refs)
        sent.append((SHORT[plan.type_url], plan.version, sorted(plan.resources)))
        request = answer(plan.type_url, plan.version, nonce, SHORT[plan.type_url] in nack)
        request.resource_names[:] = sorted(plan.names or ())  # each request restates the subscription
        state.on_request(request)
    raise AssertionError(f"no convergence after {limit} responses: {sent}")


def answer(type_url: str, version: str, nonce: str, nack: bool = False, reason: str = "bad") -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=version, response_nonce=nonce)
    if nack:
        request.error_detail.code = 3
        request.error_detail.message = reason
    return request


def delta_response(type_url: str, version: str, resources=(), removed=(), nonce: str = "n"):
    """A DeltaDiscoveryResponse carrying (name, message) `resources`, each at version NAME@VERSION."""
    out = discovery_pb2.DeltaDiscoveryResponse(type_url=type_url, system_version_info=version, nonce=nonce,
                                               removed_resources=list(removed))
    for name, message in resources:
        out.resources.add(name=name, version=f"{name}@{version}", resource=pack(message))
    return out
