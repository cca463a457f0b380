"""Make-before-break ordering (meshgrpc.xds.ordering), through a simulated proxy."""

from meshapi.v1 import discovery_pb2
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from meshgrpc.xds.ordering import next_response
from meshgrpc.xds.snapshot import Snapshot
from meshgrpc.xds.stream_state import StreamState
from tests.unit.xds_builders import answer, converge, mesh, snap, subscribe


def synced(snapshot):
    state = StreamState()
    subscribe(state)
    converge(state, snapshot)
    return state


def test_first_connect_sends_clusters_endpoints_then_routes():
    state = StreamState()
    subscribe(state)
    assert converge(state, snap("1", ["a"])) == [
        ("C", "1", ["a"]), ("E", "1", ["a"]), ("R", "1", ["default"])]


def test_a_stream_subscribed_to_policies_gets_them_before_routes():
    state = StreamState()
    subscribe(state, types=TYPE_ORDER)
    assert converge(state, snap("1", ["a"])) == [
        ("C", "1", ["a"]), ("E", "1", ["a"]), ("A", "1", []), ("R", "1", ["default"])]


def test_routes_wait_until_clusters_and_endpoints_are_answered():
    state = StreamState()
    subscribe(state)
    s1 = snap("1", ["a"])
    first = next_response(state.types, s1)
    state.types[CLUSTER].record_sent(first.version, "n1", first.names, first.resources, first.refs)
    second = next_response(state.types, s1)
    assert second.type_url == ENDPOINTS
    state.types[ENDPOINTS].record_sent(second.version, "n2", second.names, second.resources, second.refs)
    assert next_response(state.types, s1) is None  # both in flight: routes wait
    state.on_request(answer(CLUSTER, "1", "n1"))
    assert next_response(state.types, s1) is None  # endpoints still in flight
    state.on_request(answer(ENDPOINTS, "1", "n2"))
    assert next_response(state.types, s1).type_url == ROUTES


def test_added_cluster_goes_before_the_route_that_uses_it():
    state = synced(snap("1", ["a"]))
    sent = converge(state, snap("2", ["a", "b"], {"default": ["a", "b"]}))
    assert sent == [("C", "2", ["a", "b"]), ("E", "2", ["a", "b"]), ("R", "2", ["default"])]


def test_removed_cluster_still_routed_is_kept_until_routes_move_off_it():
    state = synced(snap("1", ["a", "b"], {"default": ["a", "b"]}))
    sent = converge(state, snap("2", ["a"], {"default": ["a"]}))
    assert sent == [
        ("C", "2+mbb", ["a", "b"]), ("E", "2+mbb", ["a", "b"]),  # make: union
        ("R", "2", ["default"]),                                # switch routes
        ("C", "2", ["a"]), ("E", "2", ["a"]),                   # break: removals last
    ]


def test_renamed_cluster_used_by_a_route_is_made_before_the_old_one_breaks():
    state = synced(snap("1", ["old"]))
    sent = converge(state, snap("2", ["new"]))
    assert sent == [("C", "2+mbb", ["new", "old"]), ("E", "2+mbb", ["new", "old"]),
                    ("R", "2", ["default"]), ("C", "2", ["new"]), ("E", "2", ["new"])]


def test_removed_cluster_no_route_uses_goes_at_once():
    state = synced(snap("1", ["a", "unused"], {"default": ["a"]}))
    sent = converge(state, snap("2", ["a"], {"default": ["a"]}))
    assert sent == [("C", "2", ["a"]), ("E", "2", ["a"]), ("R", "2", ["default"])]


def test_route_only_change_sends_only_routes():
    state = synced(snap("1", ["a", "b"], {"default": ["a"]}))
    # Versions are per type: clusters and endpoints keep theirs.
    s2 = Snapshot.from_mesh(mesh(["a", "b"], {"default": ["b"]}), {CLUSTER: "1", ENDPOINTS: "1", ROUTES: "2"})
    assert converge(state, s2) == [("R", "2", ["default"])]


def test_nothing_is_sent_while_routes_await_their_answer():
    state = synced(snap("1", ["a", "b"], {"default": ["a", "b"]}))
    s2 = snap("2", ["a"], {"default": ["a"]})
    for _ in range(2):  # interim clusters and endpoints, answered
        plan = next_response(state.types, s2)
        nonce = state.next_nonce()
        state.types[plan.type_url].record_sent(plan.version, nonce, plan.names, plan.resources, plan.refs)
        state.on_request(answer(plan.type_url, plan.version, nonce))
    plan = next_response(state.types, s2)
    assert (plan.type_url, plan.version) == (ROUTES, "2")
    state.types[ROUTES].record_sent(plan.version, "r", plan.names, plan.resources, plan.refs)
    assert next_response(state.types, s2) is None  # the final removal waits for the routes' ACK


def test_nacked_routes_keep_the_clusters_they_still_use():
    state = synced(snap("1", ["a", "b"], {"default": ["a", "b"]}))
    sent = converge(state, snap("2", ["a"], {"default": ["a"]}), nack={"R"})
    # The proxy keeps its old routes (on b), so b is not removed under it.
    assert sent == [("C", "2+mbb", ["a", "b"]), ("E", "2+mbb", ["a", "b"]), ("R", "2", ["default"])]
    assert state.types[CLUSTER].sent_version == "2+mbb"


def test_nacked_version_is_not_resent_but_a_new_version_is():
    state = StreamState()
    subscribe(state)
    s1 = snap("1", ["a"])
    assert converge(state, s1, nack={"C"})[0] == ("C", "1", ["a"])
    assert converge(state, s1) == []
    assert converge(state, snap("2", ["a", "b"]))[0] == ("C", "2", ["a", "b"])


def test_resume_with_current_versions_sends_nothing():
    s1 = snap("1", ["a"])
    state = StreamState()
    subscribe(state, versions={CLUSTER: "1", ENDPOINTS: "1", ROUTES: "1"})
    assert converge(state, s1) == []


def test_resume_with_an_old_route_version_sends_only_routes():
    state = StreamState()
    subscribe(state, versions={CLUSTER: "1", ENDPOINTS: "1", ROUTES: "0"})
    assert converge(state, snap("1", ["a"])) == [("R", "1", ["default"])]


def test_named_subscription_gets_only_those_resources_and_a_change_of_names_resends():
    state = StreamState()
    subscribe(state, names={CLUSTER: ["b"], ENDPOINTS: ["b"]})
    s1 = snap("1", ["a", "b"], {"default": ["a", "b"]})
    assert converge(state, s1) == [("C", "1", ["b"]), ("E", "1", ["b"]), ("R", "1", ["default"])]
    request = answer(CLUSTER, "1", state.types[CLUSTER].sent_nonce)
    request.resource_names[:] = ["a", "b"]
    state.on_request(request)
    assert converge(state, s1) == [("C", "1", ["a", "b"])]


def test_unsubscribed_types_are_never_sent():
    state = StreamState()
    state.on_request(discovery_pb2.DiscoveryRequest(type_url=ROUTES))
    assert converge(state, snap("1", ["a"])) == [("R", "1", ["default"])]


def test_interim_bodies_are_keyed_by_content():
    s1 = snap("1", ["a", "b"], {"default": ["a", "b"]})
    s2 = snap("2", ["a"], {"default": ["a"]})
    one, two = synced(s1), synced(s1)
    p1, p2 = next_response(one.types, s2), next_response(two.types, s2)
    assert p1.interim and p1.body_key == p2.body_key  # one body for both streams
    wildcard = next_response(synced(snap("1", ["a"])).types, snap("2", ["a", "c"]))
    assert wildcard.body_key is None  # the snapshot's prebuilt body
