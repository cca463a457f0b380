"""The relay's HPACK behaviour through in-memory h2 peers: never-indexed fields are
forwarded never-indexed both ways (RFC 7541 §6.2.3), and the relay's own per-call
grpc-timeout stays out of the upstream's dynamic table."""

from __future__ import annotations

import asyncio

from h2.events import RequestReceived, ResponseReceived, TrailersReceived
from hpack import NeverIndexedHeaderTuple

from tests.unit.test_relay_protocol import GRPC_REQ, Rig, of

SECRET = NeverIndexedHeaderTuple(b"x-secret", b"s3cr3t-value")


def _never_indexed(headers) -> set[bytes]:
    return {h[0] for h in headers if type(h) is NeverIndexedHeaderTuple}


def test_never_indexed_fields_are_forwarded_never_indexed_both_ways():
    rig = Rig()
    up = rig.ups[0]
    for call in range(3):  # repeats: the HPACK caches must not lose the marking
        sid = rig.request(GRPC_REQ + [SECRET, (b"x-plain", b"1")])
        req = of(up.events, RequestReceived)[call]
        assert SECRET in req.headers and (b"x-plain", b"1") in req.headers
        # (x-request-id and traceparent: new on every call, kept out of the upstream table)
        assert _never_indexed(req.headers) == {b"x-secret", b"x-request-id", b"traceparent"}
        up.h2.send_headers(req.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc"),
                                           NeverIndexedHeaderTuple(b"x-resp-secret", b"r")])
        up.h2.send_data(req.stream_id, b"\0\0\0\0\x00")
        up.h2.send_headers(req.stream_id, [(b"grpc-status", b"0"), NeverIndexedHeaderTuple(b"x-t", b"t")],
                           end_stream=True)
        rig.exchange()
        [resp] = of(rig.client.events, ResponseReceived, sid)
        [trailers] = of(rig.client.events, TrailersReceived, sid)
        assert _never_indexed(resp.headers) == {b"x-resp-secret"}
        assert _never_indexed(trailers.headers) == {b"x-t"}
        assert trailers.headers == [(b"grpc-status", b"0"), (b"x-t", b"t")]
    assert rig.client.side.h2.decoder.hits and up.side.h2.encoder.hits  # caches in use


def test_host_folded_into_authority_keeps_never_indexed():
    rig = Rig()
    no_authority = [h for h in GRPC_REQ if h[0] != b":authority"]
    rig.request(no_authority + [NeverIndexedHeaderTuple(b"host", b"svc")])
    [req] = of(rig.ups[0].events, RequestReceived)
    assert NeverIndexedHeaderTuple(b":authority", b"svc") in req.headers
    assert b":authority" in _never_indexed(req.headers) and b"host" not in [h[0] for h in req.headers]


def test_relay_grpc_timeout_goes_never_indexed_and_stays_out_of_the_upstream_table():
    loop = asyncio.new_event_loop()  # deadlines arm timers; none fires here
    try:
        _check_grpc_timeout(Rig(timeout_s=5.0), loop)
    finally:
        loop.close()


def _check_grpc_timeout(rig: Rig, loop) -> None:
    rig.relay.loop = loop
    up = rig.ups[0]
    for call in range(5):
        rig.request(GRPC_REQ + [(b"grpc-timeout", b"%dm" % (3000 - call))])
    reqs = of(up.events, RequestReceived)
    assert len(reqs) == 5
    for req in reqs:
        timeout = [h for h in req.headers if h[0] == b"grpc-timeout"]
        assert len(timeout) == 1 and type(timeout[0]) is NeverIndexedHeaderTuple
    assert all(name != b"grpc-timeout" for name, _ in up.h2.decoder.header_table.dynamic_entries)
    # The fields before it come from the relay's encoder cache after the first calls.
    assert up.side.h2.encoder.hits >= 3
