"""Malformed requests (RFC 9113 §8.1.1, §8.2, §8.3; issue 9 item 3): one row per
rule. Each is answered RST_STREAM PROTOCOL_ERROR on its stream only, the handler
never sees the request, and the connection carries a valid call afterwards."""

from __future__ import annotations

import pytest

from meshgrpc.codec import headers as H
from meshgrpc.codec.errors import PROTOCOL_ERROR
from tests.support.codec_peer import GRPC_REQUEST, GRPC_RESPONSE, client, rst_codes, server

_OK = GRPC_REQUEST


def _with(*extra):
    return _OK + list(extra)


def _without(name: bytes):
    return [f for f in _OK if f[0] != name]


# (rule, header list, the reason validate() gives)
MALFORMED_REQUESTS = [
    ("uppercase field name", _with((b"X-Upper", b"1")), H.BAD_NAME),
    ("space in a field name", _with((b"x y", b"1")), H.BAD_NAME),
    ("colon inside a field name", _with((b"x:y", b"1")), H.BAD_NAME),
    ("non-ASCII field name", _with((b"x-\xc3\xa9", b"1")), H.BAD_NAME),
    ("empty field name", _with((b"", b"1")), H.EMPTY_NAME),
    ("connection", _with((b"connection", b"close")), H.CONNECTION_SPECIFIC),
    ("keep-alive", _with((b"keep-alive", b"timeout=5")), H.CONNECTION_SPECIFIC),
    ("proxy-connection", _with((b"proxy-connection", b"keep-alive")), H.CONNECTION_SPECIFIC),
    ("transfer-encoding", _with((b"transfer-encoding", b"chunked")), H.CONNECTION_SPECIFIC),
    ("upgrade", _with((b"upgrade", b"h2c")), H.CONNECTION_SPECIFIC),
    ("te other than trailers", _without(b"te") + [(b"te", b"gzip")], H.BAD_TE),
    ("CR in a value", _with((b"x-v", b"a\rb")), H.BAD_VALUE),
    ("LF in a value", _with((b"x-v", b"a\nb")), H.BAD_VALUE),
    ("NUL in a value", _with((b"x-v", b"a\0b")), H.BAD_VALUE),
    ("leading whitespace in a value", _with((b"x-v", b" a")), H.BAD_VALUE),
    ("trailing whitespace in a value", _with((b"x-v", b"a\t")), H.BAD_VALUE),
    ("pseudo-header after a regular field", _with((b":authority", b"other")), H.PSEUDO_AFTER_REGULAR),
    ("duplicate pseudo-header", [(b":method", b"POST")] + _OK, H.DUPLICATE_PSEUDO),
    ("unknown pseudo-header", [(b":foo", b"1")] + _OK, H.UNKNOWN_PSEUDO),
    ("response pseudo-header in a request", [(b":status", b"200")] + _OK, H.UNKNOWN_PSEUDO),
    ("empty :path", [(b":path", b"") if f[0] == b":path" else f for f in _OK], H.EMPTY_PSEUDO),
    ("empty :method", [(b":method", b"") if f[0] == b":method" else f for f in _OK], H.EMPTY_PSEUDO),
    ("missing :method", _without(b":method"), H.MISSING_PSEUDO),
    ("missing :scheme", _without(b":scheme"), H.MISSING_PSEUDO),
    ("missing :path", _without(b":path"), H.MISSING_PSEUDO),
    ("CONNECT with :path", [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
     H.CONNECT_WITH_PATH),
    ("CONNECT without :authority", [(b":method", b"CONNECT")], H.MISSING_PSEUDO),
]


@pytest.mark.parametrize("rule,headers,reason", MALFORMED_REQUESTS, ids=[r[0] for r in MALFORMED_REQUESTS])
def test_malformed_request_is_reset_and_the_connection_lives(rule, headers, reason):
    assert H.validate(headers, H.REQUEST) == reason
    peer = server()
    assert peer.request(1, headers, end_stream=True) == []  # never reaches the handler
    assert rst_codes(peer.out()) == {1: PROTOCOL_ERROR}
    assert peer.conn.counters.malformed_messages == 1
    events = peer.request(3, GRPC_REQUEST, end_stream=True)
    assert events == [("request", 3, tuple(GRPC_REQUEST), True)]
    peer.conn.send_headers(3, GRPC_RESPONSE, end_stream=True)
    assert peer.out() and peer.conn.failed is None


def test_well_formed_requests_pass():
    for headers in (GRPC_REQUEST, [(b":method", b"CONNECT"), (b":authority", b"a:443")],
                    GRPC_REQUEST + [(b"x-empty", b""), (b"grpc-timeout", b"1S"), (b"x-mid", b"a b")]):
        assert H.validate(headers, H.REQUEST) is None


def test_the_verdict_is_cached_with_the_decoded_block():
    peer = server()
    bad = _with((b"connection", b"close"))
    block = peer.block(bad)
    peer.block(bad)  # the second encoding of the same list is all indexed: the same block
    again = peer.block(bad)
    from tests.support.codec_peer import headers as frame
    peer.send(frame(1, block, True), frame(3, again, True))
    hits = peer.conn.decoder.hits
    peer.send(frame(5, again, True))
    assert peer.conn.decoder.hits == hits + 1
    assert rst_codes(peer.out()) == {1: PROTOCOL_ERROR, 3: PROTOCOL_ERROR, 5: PROTOCOL_ERROR}


@pytest.mark.parametrize("headers,reason", [
    ([(b"content-type", b"application/grpc")], H.MISSING_PSEUDO),
    ([(b":status", b"20")], H.BAD_STATUS),
    ([(b":status", b"200"), (b":path", b"/")], H.UNKNOWN_PSEUDO),
    ([(b":status", b"200"), (b"Grpc-Status", b"0")], H.BAD_NAME),
])
def test_malformed_response_resets_the_stream_and_tells_the_caller(headers, reason):
    assert H.validate(headers, H.RESPONSE) == reason
    peer = client()
    peer.conn.send_headers(1, GRPC_REQUEST, end_stream=True)
    peer.out()
    from tests.support.codec_peer import headers as frame
    assert peer.send(frame(1, peer.block(headers))) == [("reset", 1, PROTOCOL_ERROR)]
    assert rst_codes(peer.out()) == {1: PROTOCOL_ERROR}


def test_trailers_with_pseudo_headers_or_without_end_stream_are_malformed():
    assert H.validate([(b":status", b"200")], H.TRAILERS) == H.UNKNOWN_PSEUDO
    from tests.support.codec_peer import headers as frame
    peer = server()
    peer.request(1, GRPC_REQUEST)
    assert peer.send(frame(1, peer.block([(b"x-t", b"1")]), end_stream=False)) == [("reset", 1, PROTOCOL_ERROR)]
