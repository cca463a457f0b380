"""Stream states (RFC 9113 §5.1): the transition table itself, and the
connection acting on it for frames a peer sends in each state."""

from __future__ import annotations

import pytest

from meshgrpc.codec import ConnectionFailed, StreamClosed
from meshgrpc.codec import streams as S
from meshgrpc.codec.errors import PROTOCOL_ERROR, STREAM_CLOSED
from tests.support import codec_peer as P
from tests.support.codec_peer import GRPC_REQUEST, GRPC_RESPONSE

# Every allowed (state, event) pair and where it leads (RFC 9113 Figure 2).
ALLOWED = [
    (S.IDLE, S.SEND_HEADERS, S.OPEN), (S.IDLE, S.RECV_HEADERS, S.OPEN),
    (S.OPEN, S.SEND_END_STREAM, S.HALF_CLOSED_LOCAL), (S.OPEN, S.RECV_END_STREAM, S.HALF_CLOSED_REMOTE),
    (S.OPEN, S.SEND_RST, S.CLOSED), (S.OPEN, S.RECV_RST, S.CLOSED),
    (S.OPEN, S.SEND_DATA, S.OPEN), (S.OPEN, S.RECV_DATA, S.OPEN),
    (S.OPEN, S.SEND_HEADERS, S.OPEN), (S.OPEN, S.RECV_HEADERS, S.OPEN),
    (S.HALF_CLOSED_LOCAL, S.RECV_END_STREAM, S.CLOSED), (S.HALF_CLOSED_LOCAL, S.RECV_DATA, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL, S.RECV_HEADERS, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL, S.SEND_RST, S.CLOSED), (S.HALF_CLOSED_LOCAL, S.RECV_RST, S.CLOSED),
    (S.HALF_CLOSED_REMOTE, S.SEND_END_STREAM, S.CLOSED), (S.HALF_CLOSED_REMOTE, S.SEND_DATA, S.HALF_CLOSED_REMOTE),
    (S.HALF_CLOSED_REMOTE, S.SEND_HEADERS, S.HALF_CLOSED_REMOTE),
    (S.HALF_CLOSED_REMOTE, S.SEND_RST, S.CLOSED), (S.HALF_CLOSED_REMOTE, S.RECV_RST, S.CLOSED),
]


@pytest.mark.parametrize("state,event,after", ALLOWED,
                         ids=[f"{S.STATE_NAMES[s]}-{S.EVENT_NAMES[e]}" for s, e, _ in ALLOWED])
def test_allowed_transition(state, event, after):
    assert S.next_state(state, event) == after


def test_every_other_pair_is_not_allowed():
    allowed = {(s, e) for s, e, _ in ALLOWED}
    for state in range(5):
        for event in range(8):
            if (state, event) not in allowed:
                assert S.next_state(state, event) == S.NOT_ALLOWED, (S.STATE_NAMES[state], S.EVENT_NAMES[event])


def test_data_after_the_peers_end_stream_is_a_stream_error():
    peer = P.server()
    peer.request(1, GRPC_REQUEST, end_stream=True)  # half-closed (remote)
    assert peer.send(P.data(1, b"late")) == [("reset", 1, STREAM_CLOSED)]
    assert P.rst_codes(peer.out()) == {1: STREAM_CLOSED} and peer.conn.failed is None


def test_headers_after_the_peers_end_stream_is_a_stream_error():
    peer = P.server()
    peer.request(1, GRPC_REQUEST, end_stream=True)
    assert peer.send(P.headers(1, peer.block([(b"x", b"1")]), True)) == [("reset", 1, STREAM_CLOSED)]


def test_sending_after_our_end_stream_raises():
    peer = P.client()
    peer.conn.send_headers(1, GRPC_REQUEST, end_stream=True)  # half-closed (local)
    assert peer.conn.streams[1].state == S.HALF_CLOSED_LOCAL
    with pytest.raises(StreamClosed):
        peer.conn.send_data(1, b"x")
    with pytest.raises(StreamClosed):
        peer.conn.send_headers(1, [(b"x", b"1")], end_stream=True)


def test_both_ends_closed_drops_the_stream():
    peer = P.client()
    peer.conn.send_headers(1, GRPC_REQUEST, end_stream=True)
    peer.send(P.headers(1, peer.block(GRPC_RESPONSE + [(b"grpc-status", b"0")]), end_stream=True))
    assert 1 not in peer.conn.streams and peer.conn.open_outbound == 0


def test_reset_closes_and_later_frames_are_ignored():
    peer = P.server()
    peer.request(1, GRPC_REQUEST)
    assert peer.send(P.rst_stream(1, 8)) == [("reset", 1, 8)]
    assert peer.send(P.data(1, b"x"), P.window_update(1, 10), P.rst_stream(1, 8)) == []
    peer.conn.reset_stream(1)  # nothing to do, no error
    assert P.rst_codes(peer.out()) == {}


@pytest.mark.parametrize("frame", [P.data(1, b"x"), P.rst_stream(1, 8), P.window_update(1, 1)],
                         ids=["DATA", "RST_STREAM", "WINDOW_UPDATE"])
def test_frames_on_idle_streams_are_connection_errors(frame):
    peer = P.server()
    with pytest.raises(ConnectionFailed) as err:
        peer.send(frame)
    assert err.value.code == PROTOCOL_ERROR


def test_a_client_cannot_open_an_even_stream():
    peer = P.server()
    with pytest.raises(ConnectionFailed) as err:
        peer.request(2, GRPC_REQUEST)
    assert err.value.code == PROTOCOL_ERROR


def test_a_server_cannot_push():
    peer = P.client()
    with pytest.raises(ConnectionFailed) as err:
        peer.send(P.frame(5, 4, 1, b"\0\0\0\x02" + peer.block(GRPC_REQUEST)))
    assert err.value.code == PROTOCOL_ERROR
