"""The delta stream's per-type state and what it decides to send (pure): only
what changed, per-resource versions, resume from what the proxy holds, removals
after the routes let go of them, NACKed content not resent."""

from __future__ import annotations

from meshapi.v1 import discovery_pb2
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from meshgrpc.xds import wire
from meshgrpc.xds.delta_state import DeltaStreamState, next_delta
from meshgrpc.xds.variants import SETTLED, Delta
from tests.unit.xds_builders import ORDERED, SHORT, snap

S = {"C": CLUSTER, "E": ENDPOINTS, "R": ROUTES}


def subscribe(state: DeltaStreamState, names: dict[str, list[str]] | None = None,
              held: dict[str, dict[str, str]] | None = None, types=ORDERED) -> None:
    for t in types:
        state.on_request(discovery_pb2.DeltaDiscoveryRequest(
            type_url=t, resource_names_subscribe=(names or {}).get(t, ["*"]),
            initial_resource_versions=(held or {}).get(t, {})))


def converge(state: DeltaStreamState, snapshot, nack: set[str] = frozenset(), limit: int = 20):
    """Plays a proxy that answers each response at once; returns what was sent as
    (type, sorted updated names, removed names)."""
    sent = []
    for _ in range(limit):
        assert_in_sync_agrees(state, snapshot)
        plan = next_delta(state.types, snapshot)
        if plan is None:
            return sent
        nonce = state.next_nonce()
        state.types[plan.type_url].record_sent(plan, nonce)
        sent.append((SHORT[plan.type_url], sorted(r.name for r in plan.updates), list(plan.removed)))
        answer = discovery_pb2.DeltaDiscoveryRequest(type_url=plan.type_url, response_nonce=nonce)
        if SHORT[plan.type_url] in nack:
            answer.error_detail.code, answer.error_detail.message = 3, "bad"
        state.on_request(answer)
    raise AssertionError(f"no convergence after {limit} responses: {sent}")


def assert_in_sync_agrees(state: DeltaStreamState, snapshot) -> None:
    """in_sync(), the cheap check, says what the statuses it does not build would say."""
    assert state.in_sync(snapshot) == all(s.state in SETTLED for s in state.statuses(snapshot)), state.types


def test_in_sync_until_a_subscribed_resource_changes_and_again_once_acked():
    state = DeltaStreamState()
    subscribe(state, names={CLUSTER: ["a"], ENDPOINTS: ["a"], ROUTES: ["default"]})
    first = snap("1", ["a", "b"], {"default": ["a"]})
    assert state.in_sync(first)        # NOT_SENT: nothing was ever sent, nothing is awaited
    plan = next_delta(state.types, first)
    nonce = state.next_nonce()
    state.types[plan.type_url].record_sent(plan, nonce)
    assert not state.in_sync(first)   # awaiting its answer
    state.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=plan.type_url, response_nonce=nonce))
    assert_in_sync_agrees(state, first)
    converge(state, first)
    assert state.in_sync(first)
    assert state.in_sync(snap("2", ["a", "b", "c"], {"default": ["a"]}))         # nothing it subscribes to
    assert not state.in_sync(snap("3", ["a", "b"], {"default": ["b"]}))          # its route changed
    converge(state, snap("3", ["a", "b"], {"default": ["b"]}))
    assert state.in_sync(snap("3", ["a", "b"], {"default": ["b"]}))


def test_a_wildcard_subscription_gets_everything_once_then_only_what_changes():
    state = DeltaStreamState()
    subscribe(state)
    assert converge(state, snap("1", ["a", "b"])) == [("C", ["a", "b"], []), ("E", ["a", "b"], []),
                                                      ("R", ["default"], [])]
    two = snap("2", ["a", "b"], {"default": ["a"]})
    changed = two[ENDPOINTS].resources["b"]
    # Nothing changed in content: the new type version alone sends nothing.
    assert converge(state, two) == []
    bigger = snap("3", ["a", "b", "c"])
    assert converge(state, bigger) == [("C", ["c"], []), ("E", ["c"], [])]
    assert state.types[ENDPOINTS].held["b"] == changed.hash


def test_policies_go_before_routes_and_only_when_they_change():
    state = DeltaStreamState()
    subscribe(state, types=TYPE_ORDER)
    assert converge(state, snap("1", ["a"])) == [("C", ["a"], []), ("E", ["a"], []), ("A", [], []),
                                                 ("R", ["default"], [])]
    assert converge(state, snap("2", ["a"])) == []


def test_resource_versions_are_content_digests_the_same_for_any_snapshot_version():
    one, two = snap("1", ["a"]), snap("77", ["a"])
    assert one[CLUSTER].resources["a"].hash == two[CLUSTER].resources["a"].hash
    assert one[CLUSTER].resources["a"].hash != snap("1", ["b"])[CLUSTER].resources["b"].hash


def test_a_resumed_stream_is_sent_only_what_differs_from_what_it_holds():
    snapshot = snap("5", ["a", "b"])
    held = {t: {n: r.hash for n, r in snapshot[t].resources.items()} for t in ORDERED}
    held[ENDPOINTS]["b"] = "0123456789abcdef"   # an older version of b's endpoints
    state = DeltaStreamState()
    subscribe(state, held=held)
    # Each type's first request is answered; only b's endpoints carry a resource.
    assert converge(state, snapshot) == [("C", [], []), ("E", ["b"], []), ("R", [], [])]


def test_subscribed_names_that_do_not_exist_are_reported_removed_once():
    state = DeltaStreamState()
    subscribe(state, names={CLUSTER: ["a", "ghost"], ENDPOINTS: ["a"], ROUTES: ["default"]})
    sent = converge(state, snap("1", ["a", "b"]))
    assert sent[0] == ("C", ["a"], ["ghost"])
    assert converge(state, snap("2", ["a", "b"])) == []


def test_a_cluster_is_removed_only_after_the_routes_stop_using_it():
    state = DeltaStreamState()
    subscribe(state)
    converge(state, snap("1", ["old"], {"default": ["old"]}))
    sent = converge(state, snap("2", ["new"], {"default": ["new"]}))
    assert sent == [("C", ["new"], []), ("E", ["new"], []), ("R", ["default"], []),
                    ("C", [], ["old"]), ("E", [], ["old"])]


def test_a_route_nacked_keeps_its_clusters_and_is_not_resent_until_it_changes():
    state = DeltaStreamState()
    subscribe(state)
    converge(state, snap("1", ["old"], {"default": ["old"]}))
    sent = converge(state, snap("2", ["new"], {"default": ["new"]}), nack={"R"})
    assert sent == [("C", ["new"], []), ("E", ["new"], []), ("R", ["default"], [])]   # old stays
    statuses = {s.type_url: s for s in state.statuses(snap("2", ["new"], {"default": ["new"]}))}
    assert statuses[ROUTES].state == statuses[ROUTES].NACKED and statuses[ROUTES].error == "bad"
    assert converge(state, snap("3", ["new", "x"], {"default": ["new"]})) == [("C", ["x"], []), ("E", ["x"], [])]


def test_unsubscribing_sends_no_removal_and_subscribing_later_sends_it_again():
    state = DeltaStreamState()
    subscribe(state, names={CLUSTER: ["a", "b"], ENDPOINTS: [], ROUTES: []})
    converge(state, snap("1", ["a", "b"]))
    state.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER, resource_names_unsubscribe=["b"]))
    assert converge(state, snap("1", ["a", "b"])) == []
    state.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER, resource_names_subscribe=["b"]))
    assert converge(state, snap("1", ["a", "b"])) == [("C", ["b"], [])]


def test_clusters_still_go_while_a_route_awaits_its_answer():
    state = DeltaStreamState()
    subscribe(state, names={CLUSTER: [], ENDPOINTS: [], ROUTES: ["default"]})
    snapshot = snap("1", ["a", "b"], {"default": ["a"]})
    converge(state, snapshot)   # the first answers, then the route
    route = next_delta(state.types, snap("2", ["a", "b"], {"default": ["b"]}))
    assert route is not None and route.type_url == ROUTES
    state.types[ROUTES].record_sent(route, state.next_nonce())
    # The proxy parks the route and subscribes to what it reaches: that still goes.
    state.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER, resource_names_subscribe=["b"]))
    plan = next_delta(state.types, snap("2", ["a", "b"], {"default": ["b"]}))
    assert plan.type_url == CLUSTER and [r.name for r in plan.updates] == ["b"]


def test_streams_sent_the_same_change_share_one_body():
    snapshot = snap("1", ["a", "b"])
    bodies = wire.BodyCache()
    sent = []
    for _ in range(2):
        variant = Delta()
        subscribe(variant.state)
        sent.append(variant.encode(variant.next_plan(snapshot), snapshot, bodies))
    assert len(bodies) == 1
    response = discovery_pb2.DeltaDiscoveryResponse.FromString(sent[0])
    assert (response.type_url, response.system_version_info, response.nonce) == (CLUSTER, "1", "1")
    assert [(r.name, r.version) for r in response.resources] == [
        (n, p.hash) for n, p in snapshot[CLUSTER].resources.items()]
