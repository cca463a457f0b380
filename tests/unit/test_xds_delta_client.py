"""The delta client's subscription state (pure): scoping to what the route
configs reach, parking a route until its clusters are answered, dropping what it
no longer reaches after the route is applied, resuming what is held."""

from __future__ import annotations

from meshapi.v1 import discovery_pb2
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES
from meshgrpc.errors import ConfigError
from meshgrpc.xds.delta_client import DeltaSubscriptions
from tests.unit.xds_builders import delta_response as response, mesh, route_config


def clusters_of(names):
    m = mesh(names)
    return [(c.name, c) for c in m.clusters], [(e.cluster, e) for e in m.endpoints]


def scoped() -> DeltaSubscriptions:
    return DeltaSubscriptions({CLUSTER: [], ENDPOINTS: [], ROUTES: ["default"]}, scoped=True)


def test_a_scoped_proxy_first_subscribes_to_its_route_config_only_and_a_wildcard_to_all():
    first = scoped().first_requests(discovery_pb2.Node(id="p"))
    assert [(r.type_url, list(r.resource_names_subscribe)) for r in first] == [
        (CLUSTER, []), (ENDPOINTS, []), (ROUTES, ["default"])]
    assert first[0].node.id == "p" and not first[1].HasField("node")
    everything = DeltaSubscriptions({CLUSTER: [], ENDPOINTS: []}, scoped=True).first_requests(discovery_pb2.Node())
    assert [list(r.resource_names_subscribe) for r in everything] == [["*"], ["*"]]


def test_a_route_reaching_unheld_clusters_is_parked_until_both_types_answer():
    subs = scoped()
    route = subs.decode(response(ROUTES, "1", [("default", route_config("default", ["a", "b"]))]))
    assert subs.needs_parking(route)
    widen = subs.widen(subs.reach(route))
    assert [(r.type_url, list(r.resource_names_subscribe)) for r in widen] == [(CLUSTER, ["a", "b"]),
                                                                             (ENDPOINTS, ["a", "b"])]
    subs.parked = route
    clusters, endpoints = clusters_of(["a", "b"])
    subs.accept(subs.decode(response(CLUSTER, "1", clusters)))
    assert subs.ready_parked() is None                     # endpoints not answered yet
    subs.accept(subs.decode(response(ENDPOINTS, "1", endpoints[:1], removed=["b"])))   # b has none
    assert subs.ready_parked() is route and subs.parked is None


def test_after_a_route_moves_the_clusters_it_left_are_dropped_endpoints_first():
    subs = scoped()
    clusters, endpoints = clusters_of(["a", "b"])
    subs.widen({"a", "b"})
    subs.accept(subs.decode(response(CLUSTER, "1", clusters)))
    subs.accept(subs.decode(response(ENDPOINTS, "1", endpoints)))
    subs.accept(subs.decode(response(ROUTES, "1", [("default", route_config("default", ["b"]))])))
    requests, shrunk = subs.narrow()
    assert [(r.type_url, list(r.resource_names_unsubscribe)) for r in requests] == [(CLUSTER, ["a"]),
                                                                                   (ENDPOINTS, ["a"])]
    assert shrunk == [CLUSTER, ENDPOINTS] and set(subs.held[CLUSTER]) == {"b"} and set(subs.held[ENDPOINTS]) == {"b"}


def test_a_reconnect_resumes_with_the_versions_held():
    subs = scoped()
    clusters, _ = clusters_of(["a"])
    subs.widen({"a"})
    subs.accept(subs.decode(response(CLUSTER, "4", clusters)))
    again = subs.first_requests(discovery_pb2.Node(id="p"))
    assert dict(again[0].initial_resource_versions) == {"a": "a@4"} and list(again[0].resource_names_subscribe) == ["a"]
    unchanged = subs.decode(response(CLUSTER, "5"))
    assert subs.unchanged(unchanged)


def test_a_nack_keeps_what_was_held():
    subs = scoped()
    clusters, _ = clusters_of(["a"])
    subs.widen({"a"})
    subs.accept(subs.decode(response(CLUSTER, "1", clusters)))
    bad = subs.decode(response(CLUSTER, "2", removed=["a"], nonce="n2"))
    nack = subs.reject(bad, ConfigError(["no"]))
    assert nack.response_nonce == "n2" and "no" in nack.error_detail.message
    assert set(subs.held[CLUSTER]) == {"a"} and subs.versions[CLUSTER] == "1"


def test_the_clusters_a_route_mirrors_to_are_in_its_scope():
    subs = scoped()
    route = route_config("default", ["a"])
    route.virtual_hosts[0].routes[0].route.mirror.cluster = "shadow"
    received = subs.decode(response(ROUTES, "1", [("default", route)]))
    assert subs.reach(received) == {"a", "shadow"} and subs.needs_parking(received)
