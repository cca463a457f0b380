"""The codec's limits (issue 9 "What to build" 1): for each, the attack it stops
and the GOAWAY code it answers with, the counter it bumps, and a well-behaved
peer just inside it that is not affected."""

from __future__ import annotations

import pytest

from meshgrpc.codec import ConnectionFailed, Limits
from meshgrpc.codec.errors import ENHANCE_YOUR_CALM, FRAME_SIZE_ERROR, PROTOCOL_ERROR, REFUSED_STREAM
from tests.support import codec_peer as P
from tests.support.codec_peer import GRPC_REQUEST, GRPC_RESPONSE, FakeClock


def _refused(peer, *chunks) -> ConnectionFailed:
    with pytest.raises(ConnectionFailed) as err:
        peer.send(*chunks)
    assert P.goaway_codes(peer.out()) == [err.value.code]  # the GOAWAY went out with it
    with pytest.raises(ConnectionFailed):  # and the connection stays refused
        peer.send(P.ping())
    return err.value


def _open_and_reset(peer, first_sid: int, n: int) -> None:
    for i in range(n):
        sid = first_sid + 2 * i
        peer.request(sid, GRPC_REQUEST)
        peer.send(P.rst_stream(sid, 8))


# -- premature resets (CVE-2023-44487) ---------------------------------------------------

def test_rapid_reset_gets_goaway_enhance_your_calm():
    peer = P.server()
    _open_and_reset(peer, 1, 499)
    err = _refused(peer, P.headers(999, peer.block(GRPC_REQUEST)))
    assert err.code == ENHANCE_YOUR_CALM and peer.conn.counters.premature_resets == 1


def test_streams_reset_after_the_premature_window_or_completed_are_fine():
    clock = FakeClock()
    peer = P.server(clock=clock)
    for i in range(600):
        sid = 1 + 2 * i
        peer.request(sid, GRPC_REQUEST)
        if i % 3 == 0:
            clock.advance(1.5)  # lived longer than premature_reset_seconds
            peer.send(P.rst_stream(sid, 8))
        else:
            peer.conn.reset_stream(sid, 8)  # our reset, not the peer's
    _open_and_reset(peer, 1201, 100)  # a few quick resets: well under half
    assert peer.conn.failed is None and peer.conn.counters.premature_resets == 0


# -- control frame floods ------------------------------------------------------------

def test_ping_flood_gets_goaway():
    peer = P.server(limits=Limits(max_queued_control_frames=10**6))
    err = _refused(peer, P.ping() * 1001)
    assert err.code == ENHANCE_YOUR_CALM and peer.conn.counters.ping_flood == 1


def test_pings_within_the_rate_are_answered():
    clock = FakeClock()
    peer = P.server(clock=clock)
    for _ in range(3):
        for _ in range(2):
            peer.send(P.ping(b"12345678") * 500)
            acks = [f for f in P.parse_frames(peer.out()) if f[0] == 6]
            assert len(acks) == 500 and acks[0][1] == 1 and acks[0][3] == b"12345678"
        clock.advance(1.0)


def test_settings_flood_gets_goaway():
    peer = P.server()
    err = _refused(peer, P.settings() * 100)  # the handshake's SETTINGS was the first
    assert err.code == ENHANCE_YOUR_CALM and peer.conn.counters.settings_flood == 1


def test_settings_within_the_rate_are_acknowledged():
    clock = FakeClock()
    peer = P.server(clock=clock)
    clock.advance(1.0)
    peer.send(P.settings(initial_window_size=1000) * 100)
    assert peer.out().count(P.SETTINGS_ACK) == 100


def test_window_update_flood_gets_goaway():
    peer = P.server()
    err = _refused(peer, P.window_update(0, 1) * 6)
    assert err.code == ENHANCE_YOUR_CALM and peer.conn.counters.window_update_flood == 1


def test_window_updates_answering_our_data_are_fine():
    peer = P.server()
    peer.request(1, GRPC_REQUEST, end_stream=True)
    peer.conn.send_headers(1, GRPC_RESPONSE)
    for _ in range(200):
        peer.conn.send_data(1, b"x" * 100)
        peer.send(P.window_update(1, 100), P.window_update(0, 100))
    assert peer.conn.failed is None


def test_unread_control_frames_are_bounded():
    peer = P.server(limits=Limits(max_pings_per_second=10**6))
    err = _refused(peer, P.ping() * 1001)  # 1,001 ACKs queued, none taken
    assert err.code == ENHANCE_YOUR_CALM and peer.conn.counters.control_queue_full == 1


def test_control_frames_taken_as_they_come_are_not_counted_twice():
    peer = P.server(limits=Limits(max_pings_per_second=10**6))
    for _ in range(10):
        peer.send(P.ping() * 600)
        peer.out()
    assert peer.conn.failed is None


def test_malformed_requests_never_read_fill_the_control_queue():
    peer = P.server()
    bad = GRPC_REQUEST + [(b"connection", b"close")]
    first = P.headers(1, peer.block(bad), True)  # fills the peer's table
    again = peer.block(bad)  # all indexed from now on
    err = _refused(peer, first + b"".join(P.headers(3 + 2 * i, again, True) for i in range(1000)))
    assert err.code == ENHANCE_YOUR_CALM


# -- empty frames ----------------------------------------------------------------------

def test_consecutive_empty_data_frames_get_goaway():
    peer = P.server()
    peer.request(1, GRPC_REQUEST)
    err = _refused(peer, P.data(1, b""), P.data(1, b""))
    assert err.code == ENHANCE_YOUR_CALM and peer.conn.counters.empty_frames == 1


def test_empty_continuations_get_goaway():
    peer = P.server()
    block = peer.block(GRPC_REQUEST)
    err = _refused(peer, P.headers(1, block, end_headers=False), P.continuation(1, b"", False),
                   P.continuation(1, b"", False))
    assert err.code == ENHANCE_YOUR_CALM


def test_one_empty_frame_at_a_time_or_with_end_stream_is_fine():
    peer = P.server()
    peer.request(1, GRPC_REQUEST)
    events = peer.send(P.data(1, b""), P.data(1, b"ab"), P.data(1, b""), P.data(1, b"", end_stream=True))
    assert [e[0] for e in events] == ["data"] * 4 and peer.conn.failed is None


# -- header blocks -----------------------------------------------------------------------

def test_endless_continuation_is_refused_before_the_block_ends():
    peer = P.server()
    chunk = b"\x00" * 16384
    with pytest.raises(ConnectionFailed) as err:
        peer.send(P.headers(1, chunk, end_headers=False))
        for _ in range(3):
            peer.send(P.continuation(1, chunk, end_headers=False))
        peer.send(P.continuation(1, b"\x00", end_headers=False))  # 1 octet past 64 KiB
    assert err.value.code == ENHANCE_YOUR_CALM and peer.conn.counters.header_list_too_large == 1


def test_a_large_block_split_in_continuations_within_the_limit_is_served():
    peer = P.server()
    headers = GRPC_REQUEST + [(b"x-big-%d" % i, b"v" * 900) for i in range(60)]  # ~56 KiB
    block = peer.block(headers)
    parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    chunks = [P.headers(1, parts[0], True, end_headers=False)]
    chunks += [P.continuation(1, p, end_headers=(i == len(parts) - 2)) for i, p in enumerate(parts[1:])]
    assert peer.send(*chunks) == [("request", 1, tuple(headers), True)]


def test_decoded_header_list_over_the_limit_gets_goaway():
    peer = P.server(limits=Limits(max_header_list_size=1000))
    assert peer.request(1, GRPC_REQUEST + [(b"x-big", b"v" * 500)], end_stream=True)  # fits
    block = peer.block(GRPC_REQUEST + [(b"x-big", b"v" * 500)] * 2)  # indexes: a short block
    err = _refused(peer, P.headers(3, block, True))
    assert len(block) < 100
    assert err.code == ENHANCE_YOUR_CALM


def test_more_than_100_fields_refuses_the_stream_only():
    peer = P.server()
    too_many = GRPC_REQUEST + [(b"x-%d" % i, b"") for i in range(101 - len(GRPC_REQUEST))]
    assert peer.request(1, too_many, end_stream=True) == []
    assert P.rst_codes(peer.out()) == {1: ENHANCE_YOUR_CALM}
    assert peer.conn.counters.too_many_header_fields == 1
    just_right = too_many[:100]
    assert peer.request(3, just_right, end_stream=True) == [("request", 3, tuple(just_right), True)]


# -- frame length at the header --------------------------------------------------------

def test_oversized_frame_is_refused_at_its_header():
    peer = P.server()
    header_only = P.frame(0, 0, 1, b"x" * 16385)[:9]
    err = _refused(peer, header_only)
    assert err.code == FRAME_SIZE_ERROR and peer.conn.counters.frame_too_large == 1


def test_a_frame_of_max_frame_size_is_accepted():
    peer = P.server()
    peer.request(1, GRPC_REQUEST)
    [event] = peer.send(P.data(1, b"x" * 16384))
    assert event[:2] == ("data", 1) and len(event[2]) == 16384


# -- the first frame ---------------------------------------------------------------------

@pytest.mark.parametrize("first", [P.ping(), P.SETTINGS_ACK, P.window_update(0, 1)])
def test_first_frame_after_the_preface_must_be_settings(first):
    from meshgrpc.codec import Connection
    rec = P.Recorder()
    conn = Connection(rec, client=False)
    peer = P.RawPeer(conn, rec)
    err = _refused(peer, P.PREFACE + first)
    assert err.code == PROTOCOL_ERROR and conn.counters.first_frame_not_settings == 1


def test_a_bad_preface_is_a_protocol_error():
    from meshgrpc.codec import Connection
    rec = P.Recorder()
    conn = Connection(rec, client=False)
    peer = P.RawPeer(conn, rec)
    assert _refused(peer, b"GET / HTTP/1.1\r\n\r\n").code == PROTOCOL_ERROR


# -- concurrency ---------------------------------------------------------------------------

def test_streams_over_max_concurrent_streams_are_refused_and_the_connection_lives():
    peer = P.server(limits=Limits(max_concurrent_streams=2))
    peer.request(1, GRPC_REQUEST)
    peer.request(3, GRPC_REQUEST)
    assert peer.request(5, GRPC_REQUEST) == []
    assert P.rst_codes(peer.out()) == {5: REFUSED_STREAM}
    peer.send(P.rst_stream(1, 8))
    assert peer.request(7, GRPC_REQUEST)[0][:2] == ("request", 7)


def test_limits_validate_their_fields():
    with pytest.raises(ValueError, match="max_frame_size = 100"):
        Limits(max_frame_size=100)
    with pytest.raises(ValueError, match="premature_reset_ratio"):
        Limits(premature_reset_ratio=0)
