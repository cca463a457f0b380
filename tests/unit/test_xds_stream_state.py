"""The xDS ACK/NACK state machine (meshgrpc.xds.stream_state), no sockets."""

import pytest

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from meshgrpc.xds.stream_state import Outcome, StreamState, UnknownTypeError
from tests.unit.xds_builders import ORDERED, answer, converge, snap, subscribe

S = management_pb2.TypeStatus.SyncState


def sent(state, type_url, version="1", nonce=None):
    nonce = nonce or state.next_nonce()
    state.types[type_url].record_sent(version, nonce, None, {}, frozenset())
    return nonce


def status(state, versions):
    return {s.type_url: s for s in state.statuses(versions)}


def test_first_request_subscribes_and_empty_names_mean_all():
    state = StreamState()
    assert state.on_request(discovery_pb2.DiscoveryRequest(type_url=CLUSTER)) is Outcome.SUBSCRIBE
    assert state.types[CLUSTER].subscribed and state.types[CLUSTER].names is None
    state.on_request(discovery_pb2.DiscoveryRequest(type_url=ENDPOINTS, resource_names=["a"]))
    assert state.types[ENDPOINTS].names == frozenset({"a"})


def test_unknown_type_is_refused_naming_it():
    with pytest.raises(UnknownTypeError, match="type.googleapis.com/x.Y"):
        StreamState().on_request(discovery_pb2.DiscoveryRequest(type_url="type.googleapis.com/x.Y"))


def test_each_response_gets_a_fresh_nonce():
    state = StreamState()
    assert len({state.next_nonce() for _ in range(100)}) == 100


def test_ack_with_latest_nonce_records_the_acked_version():
    state = StreamState()
    subscribe(state)
    nonce = sent(state, CLUSTER, "7")
    assert status(state, {CLUSTER: "7"})[CLUSTER].state == S.STALE  # sent, not yet ACKed
    assert state.on_request(answer(CLUSTER, "7", nonce)) is Outcome.ACK
    assert state.types[CLUSTER].acked_version == "7" and not state.types[CLUSTER].awaiting
    assert status(state, {CLUSTER: "7"})[CLUSTER].state == S.SYNCED
    assert status(state, {CLUSTER: "8"})[CLUSTER].state == S.STALE


def test_stale_nonce_is_ignored_and_changes_nothing():
    state = StreamState()
    subscribe(state)
    old = sent(state, CLUSTER, "1")
    sent(state, CLUSTER, "2")
    before = repr(state.types[CLUSTER])
    assert state.on_request(answer(CLUSTER, "1", old)) is Outcome.STALE
    assert state.on_request(answer(CLUSTER, "1", old, nack=True)) is Outcome.STALE
    assert state.on_request(answer(CLUSTER, "", "")) is Outcome.STALE  # re-subscribe after a send
    assert repr(state.types[CLUSTER]) == before
    assert state.types[CLUSTER].awaiting


def test_nonce_of_another_type_is_stale():
    state = StreamState()
    subscribe(state)
    nonce = sent(state, CLUSTER)
    sent(state, ROUTES)
    assert state.on_request(answer(ROUTES, "1", nonce)) is Outcome.STALE


def test_nack_records_the_reason_and_keeps_the_last_good_version():
    state = StreamState()
    subscribe(state)
    state.on_request(answer(CLUSTER, "1", sent(state, CLUSTER, "1")))
    nonce = sent(state, CLUSTER, "2")
    assert state.on_request(answer(CLUSTER, "1", nonce, nack=True, reason="weights sum to 0")) is Outcome.NACK
    st = status(state, {CLUSTER: "2"})[CLUSTER]
    assert (st.state, st.error, st.sent_version, st.acked_version) == (S.NACKED, "weights sum to 0", "2", "1")
    # A later ACK of a newer version clears the NACKED state.
    state.on_request(answer(CLUSTER, "3", sent(state, CLUSTER, "3")))
    assert status(state, {CLUSTER: "3"})[CLUSTER].state == S.SYNCED


def test_nacked_version_is_not_resent():
    state = StreamState()
    subscribe(state, types=TYPE_ORDER)
    s1 = snap("1", ["a"])
    converge(state, s1, nack={"C", "E", "R", "A"})
    assert converge(state, s1) == []
    assert {st.state for st in state.statuses(s1.versions())} == {S.NACKED}


def test_reconnect_with_current_version_is_synced_without_a_resend():
    state = StreamState()
    subscribe(state, versions={t: "1" for t in TYPE_ORDER}, types=TYPE_ORDER)
    assert converge(state, snap("1", ["a"])) == []
    assert {st.state for st in state.statuses({t: "1" for t in TYPE_ORDER})} == {S.SYNCED}


def test_types_never_sent_show_not_sent():
    state = StreamState()
    subscribe(state)
    assert {st.state for st in state.statuses({t: "1" for t in ORDERED})} == {S.NOT_SENT}
