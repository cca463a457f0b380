"""meshgrpc.codec.Connection as the relay and a small gRPC client use it: the
handshake, a unary call both ways, flow control, GOAWAY without closing,
stream limits, PING, and real h2 peers on the other end."""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2 import events as h2e

from meshgrpc.codec import Connection, FlowControlBlocked, GoingAway, Limits, StreamClosed, TooManyStreams
from meshgrpc.codec.errors import CANCEL, NO_ERROR, REFUSED_STREAM
from tests.support import codec_peer as P
from tests.support.codec_peer import GRPC_REQUEST, GRPC_RESPONSE, GRPC_TRAILERS, Recorder


def _h2(client: bool) -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=client, header_encoding=None))
    conn.initiate_connection()
    return conn


def _pair(client_role: bool):
    """Our codec in `client_role` against an h2 peer in the other, handshake done."""
    rec = Recorder()
    ours = Connection(rec, client=client_role)
    theirs = _h2(not client_role)
    _exchange(ours, theirs)
    rec.take()
    return ours, rec, theirs


def _exchange(ours: Connection, theirs: H2Connection) -> list:
    events = []
    for _ in range(4):
        out = theirs.data_to_send()
        if out:
            ours.receive(out)
        back = ours.data_to_send()
        if back:
            events += theirs.receive_data(back)
        if not out and not back:
            break
    return events


def test_handshake_advertises_the_limits_and_grows_the_connection_window():
    rec = Recorder()
    conn = Connection(rec, client=True, limits=Limits(stream_window=1 << 20, connection_window=16 << 20))
    out = conn.data_to_send()
    assert out.startswith(P.PREFACE)
    frames = P.parse_frames(out)
    assert [f[0] for f in frames] == [4, 8]  # SETTINGS, WINDOW_UPDATE
    settings = {int.from_bytes(frames[0][3][i:i + 2], "big"): int.from_bytes(frames[0][3][i + 2:i + 6], "big")
                for i in range(0, len(frames[0][3]), 6)}
    assert settings == {2: 0, 3: 1000, 4: 1 << 20, 6: 1 << 16}
    assert int.from_bytes(frames[1][3], "big") == (16 << 20) - 65535


def test_unary_call_through_the_server_role():
    ours, rec, client = _pair(client_role=False)
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, GRPC_REQUEST)
    client.send_data(sid, b"\0\0\0\0\x05hello", end_stream=True)
    _exchange(ours, client)
    assert rec.take() == [("request", sid, tuple(GRPC_REQUEST), False),
                          ("data", sid, b"\0\0\0\0\x05hello", 10, True)]
    ours.acknowledge(sid, 10)
    ours.send_headers(sid, GRPC_RESPONSE)
    ours.send_data(sid, b"\0\0\0\0\x02hi")
    ours.send_headers(sid, GRPC_TRAILERS, end_stream=True)
    events = _exchange(ours, client)
    kinds = [type(e) for e in events]
    assert kinds == [h2e.ResponseReceived, h2e.DataReceived, h2e.TrailersReceived, h2e.StreamEnded]
    assert events[0].headers == GRPC_RESPONSE and events[2].headers == GRPC_TRAILERS
    assert ours.streams == {}


def test_unary_call_through_the_client_role():
    ours, rec, server = _pair(client_role=True)
    sid = ours.next_stream_id()
    assert sid == 1
    ours.send_headers(sid, GRPC_REQUEST)
    ours.send_data(sid, b"\0\0\0\0\x01x", end_stream=True)
    events = _exchange(ours, server)
    req = [e for e in events if isinstance(e, h2e.RequestReceived)][0]
    assert req.headers == GRPC_REQUEST and ours.next_stream_id() == 3
    server.send_headers(sid, GRPC_RESPONSE)
    server.send_data(sid, b"\0\0\0\0\x01y")
    server.send_headers(sid, GRPC_TRAILERS, end_stream=True)
    _exchange(ours, server)
    assert rec.take() == [("response", 1, tuple(GRPC_RESPONSE), False), ("data", 1, b"\0\0\0\0\x01y", 6, False),
                          ("trailers", 1, tuple(GRPC_TRAILERS))]
    assert ours.streams == {} and ours.open_outbound == 0


def test_trailers_only_response_arrives_and_leaves_as_one_headers_frame():
    peer = P.client()
    peer.conn.send_headers(1, GRPC_REQUEST, end_stream=True)
    peer.out()
    trailers_only = GRPC_RESPONSE + [(b"grpc-status", b"14")]
    assert peer.send(P.headers(1, peer.block(trailers_only), end_stream=True)) == [
        ("response", 1, tuple(trailers_only), True)]
    down = P.server()
    down.request(1, GRPC_REQUEST, end_stream=True)
    down.conn.send_headers(1, trailers_only, end_stream=True)
    [(ftype, flags, sid, _)] = P.parse_frames(down.out())
    assert (ftype, flags & 0x5, sid) == (1, 0x5, 1)  # HEADERS, END_STREAM | END_HEADERS


def test_informational_responses_are_skipped():
    peer = P.client()
    peer.conn.send_headers(1, GRPC_REQUEST, end_stream=True)
    assert peer.send(P.headers(1, peer.block([(b":status", b"100")]))) == []
    assert peer.send(P.headers(1, peer.block(GRPC_RESPONSE)))[0][0] == "response"


def test_settings_do_not_grow_the_connection_window_a_window_update_does():
    peer = P.client()
    peer.conn.send_headers(1, GRPC_REQUEST)
    assert peer.conn.send_window(1) == 65535
    peer.send(P.settings(initial_window_size=1 << 20))
    assert peer.conn.streams[1].send_window == 1 << 20 and peer.conn.send_window(1) == 65535
    assert peer.send(P.window_update(0, 100000)) == [("window_update", 0)]
    assert peer.conn.send_window(1) == 165535


def test_send_data_beyond_the_window_raises_and_resumes_on_window_update():
    peer = P.client(initial_window_size=10)
    peer.conn.send_headers(1, GRPC_REQUEST)
    with pytest.raises(FlowControlBlocked):
        peer.conn.send_data(1, b"x" * 11)
    peer.conn.send_data(1, b"x" * 10)
    assert peer.conn.send_window(1) == 0
    assert peer.send(P.window_update(1, 5)) == [("window_update", 1)]
    peer.conn.send_data(1, b"y" * 5, end_stream=True)
    with pytest.raises(StreamClosed):
        peer.conn.send_data(1, b"z")


def test_data_is_split_at_the_peers_max_frame_size():
    peer = P.client(max_frame_size=16384)
    peer.send(P.window_update(0, 1 << 20))
    peer.send(P.settings(initial_window_size=1 << 20))
    peer.conn.send_headers(1, GRPC_REQUEST)
    peer.out()
    payload = memoryview(b"a" * 40000)
    peer.conn.send_data(1, payload, end_stream=True)
    frames = P.parse_frames(peer.out())
    assert [(f[0], len(f[3]), f[1]) for f in frames] == [(0, 16384, 0), (0, 16384, 0), (0, 7232, 1)]


def test_padding_counts_against_the_windows_and_is_returned_by_acknowledge():
    peer = P.server(limits=Limits(stream_window=1000, connection_window=65535))
    peer.request(1, GRPC_REQUEST)
    [event] = peer.send(P.data(1, b"a" * 300, pad=255))
    assert event == ("data", 1, b"a" * 300, 556, False)
    assert peer.conn.streams[1].recv_window == 444 and peer.conn.conn_recv_window == 65535 - 556
    peer.conn.acknowledge(1, 556)
    assert peer.conn.streams[1].recv_window == 1000  # half the stream window owed: updated
    assert [(f[0], f[2], int.from_bytes(f[3], "big")) for f in P.parse_frames(peer.out())] == [(8, 1, 556)]


def test_data_for_closed_streams_is_credited_back_on_the_connection():
    peer = P.server(limits=Limits(connection_window=65535))
    peer.request(1, GRPC_REQUEST)
    peer.conn.reset_stream(1, CANCEL)
    peer.out()
    assert peer.send(*[P.data(1, b"x" * 16000) for _ in range(3)]) == []
    frames = P.parse_frames(peer.out())
    assert [(f[0], f[2]) for f in frames] == [(8, 0)]  # one WINDOW_UPDATE on the connection
    assert peer.conn.conn_recv_window == 65535


def test_small_calls_need_no_window_update():
    peer = P.server()
    for sid in (1, 3, 5):
        peer.request(sid, GRPC_REQUEST)
        peer.send(P.data(sid, b"\0\0\0\0\x05hello", end_stream=True))
        peer.conn.acknowledge(sid, 10)
    assert [f for f in P.parse_frames(peer.out()) if f[0] == 8] == []


def test_goaway_received_keeps_the_connection_for_streams_it_covers():
    peer = P.client()
    for sid in (1, 3, 5):
        peer.conn.send_headers(sid, GRPC_REQUEST)
    assert peer.send(P.goaway(3, NO_ERROR, b"bye")) == [("goaway", NO_ERROR, 3, b"bye")]
    with pytest.raises(GoingAway):
        peer.conn.send_headers(7, GRPC_REQUEST)
    peer.conn.send_data(1, b"still", end_stream=True)  # streams <= 3 go on
    peer.conn.reset_stream(5, REFUSED_STREAM)
    events = peer.send(P.headers(1, peer.block(GRPC_RESPONSE)), P.data(1, b"ok", end_stream=True))
    assert [e[0] for e in events] == ["response", "data"] and peer.conn.failed is None


def test_goaway_sent_refuses_newer_streams_and_lets_older_ones_finish():
    peer = P.server()
    peer.request(1, GRPC_REQUEST)
    peer.conn.goaway(NO_ERROR)
    [(ftype, _, _, payload)] = P.parse_frames(peer.out())
    assert ftype == 7 and int.from_bytes(payload[:4], "big") == 1
    assert peer.request(3, GRPC_REQUEST, end_stream=True) == []
    assert P.rst_codes(peer.out()) == {3: REFUSED_STREAM}
    assert peer.send(P.data(1, b"x", end_stream=True))[0][0] == "data"
    peer.conn.send_headers(1, GRPC_RESPONSE + [(b"grpc-status", b"0")], end_stream=True)
    assert peer.conn.streams == {}


def test_opening_beyond_the_peers_max_concurrent_streams_raises_too_many_streams():
    peer = P.client(max_concurrent_streams=2)
    peer.conn.send_headers(1, GRPC_REQUEST)
    peer.conn.send_headers(3, GRPC_REQUEST)
    with pytest.raises(TooManyStreams):
        peer.conn.send_headers(5, GRPC_REQUEST)
    peer.send(P.rst_stream(1, CANCEL))
    peer.conn.send_headers(5, GRPC_REQUEST)


def test_stream_ids_are_allocated_in_order():
    peer = P.client()
    with pytest.raises(StreamClosed):
        peer.conn.send_headers(2, GRPC_REQUEST)  # even ids are the server's
    peer.conn.send_headers(5, GRPC_REQUEST)
    assert peer.conn.next_stream_id() == 7
    with pytest.raises(StreamClosed):
        peer.conn.send_headers(3, GRPC_REQUEST)  # below one already used


def test_ping_is_acknowledged_and_our_ping_ack_is_reported():
    peer = P.client()
    peer.send(P.ping(b"abcdefgh"))
    [(ftype, flags, _, payload)] = P.parse_frames(peer.out())
    assert (ftype, flags, payload) == (6, 1, b"abcdefgh")
    peer.conn.ping(b"12345678")
    assert P.parse_frames(peer.out()) == [(6, 0, 0, b"12345678")]
    assert peer.send(P.ping(b"12345678", ack=True)) == [("ping_ack", b"12345678")]


def test_frames_split_across_reads_byte_by_byte_give_the_same_events():
    peer = P.server()
    wire = (P.headers(1, peer.block(GRPC_REQUEST)) + P.data(1, b"hello", pad=3)
            + P.data(1, b"world", end_stream=True))
    events = []
    for i in range(len(wire)):
        events += peer.send(wire[i:i + 1])
    assert events == [("request", 1, tuple(GRPC_REQUEST), False), ("data", 1, b"hello", 9, False),
                      ("data", 1, b"world", 5, True)]


def test_data_arrives_as_a_view_of_the_received_bytes():
    seen = []

    class Keep(Recorder):
        def on_data(self, sid, data, flow_len, end_stream):
            seen.append(data)

    conn = Connection(Keep(), client=False)
    conn.receive(P.PREFACE + P.settings())
    import hpack
    wire = P.headers(1, hpack.Encoder().encode(GRPC_REQUEST)) + P.data(1, b"payload")
    conn.receive(wire)
    [view] = seen
    assert isinstance(view, memoryview) and view.obj is wire and bytes(view) == b"payload"


def test_the_client_preface_split_across_reads_is_accepted():
    rec = Recorder()
    conn = Connection(rec, client=False)
    wire = P.PREFACE + P.settings()
    conn.receive(wire[:10])
    conn.receive(wire[10:])
    assert rec.take() == [("settings",)] and conn.failed is None


def test_h2_client_streams_many_calls_over_the_codec():
    ours, rec, client = _pair(client_role=False)
    for i in range(50):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, GRPC_REQUEST + [(b"x-n", b"%d" % i)])
        client.send_data(sid, b"\0\0\0\0\x01" + bytes((i,)), end_stream=True)
        _exchange(ours, client)
        events = rec.take()
        assert events[0][:2] == ("request", sid) and events[1][2][-1] == i
        ours.acknowledge(sid, events[1][3])
        ours.send_headers(sid, GRPC_RESPONSE)
        ours.send_data(sid, b"\0\0\0\0\x01" + bytes((i,)))
        ours.send_headers(sid, GRPC_TRAILERS, end_stream=True)
        got = _exchange(ours, client)
        data = [e for e in got if isinstance(e, h2e.DataReceived)]
        assert data[0].data[-1] == i
        client.acknowledge_received_data(data[0].flow_controlled_length, sid)
    assert ours.encoder.hits > 40 and ours.decoder.hits == 0  # each request differs (x-n)


def test_a_handler_that_raises_does_not_see_frames_twice():
    class Fails(Recorder):
        def on_request(self, sid, headers, end_stream):
            super().on_request(sid, headers, end_stream)
            if sid == 1:
                raise RuntimeError("handler bug")

    rec = Fails()
    conn = Connection(rec, client=False)
    conn.receive(P.PREFACE + P.settings())
    import hpack
    enc = hpack.Encoder()
    wire = P.headers(1, enc.encode(GRPC_REQUEST)) + P.headers(3, enc.encode(GRPC_REQUEST))
    with pytest.raises(RuntimeError):
        conn.receive(wire + P.data(3, b"abc")[:5])
    conn.receive(P.data(3, b"abc")[5:])
    assert [e[:2] for e in rec.take()] == [("settings",), ("request", 1), ("request", 3), ("data", 3)]
