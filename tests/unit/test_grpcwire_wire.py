"""grpcwire's pure parts: gRPC's length-prefixed framing cut at every byte, limits
checked at the prefix, statuses read from trailers, HTTP statuses and resets,
grpc-message percent-decoding, and the request headers with custom metadata."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as s

from meshgrpc.codec import errors as h2
from meshgrpc.grpcwire import framing, metadata, status as st
from meshgrpc.grpcwire.status import RpcError, Status
from meshgrpc.proxy.grpc_status import encode_message


def test_messages_split_at_any_byte_come_out_whole_and_in_order():
    messages = [b"", b"a", bytes(range(256)) * 3, b""]
    wire = b"".join(framing.encode(x, 1 << 20) for x in messages)
    for cut in range(len(wire) + 1):
        deframer = framing.Deframer(1 << 20)
        got = deframer.feed(wire[:cut]) + deframer.feed(memoryview(wire)[cut:])
        assert got == messages and deframer.held == 0, cut


@given(s.lists(s.binary(max_size=300), max_size=8), s.lists(s.integers(1, 64), min_size=1, max_size=20))
def test_any_chunking_of_any_messages_is_cut_back_into_them(messages, chunks):
    wire = b"".join(framing.encode(x, 1 << 20) for x in messages)
    deframer, got, pos, i = framing.Deframer(1 << 20), [], 0, 0
    while pos < len(wire):
        size = chunks[i % len(chunks)]
        got += deframer.feed(wire[pos:pos + size])
        pos, i = pos + size, i + 1
    assert got == messages


def test_a_message_above_the_limit_is_refused_at_its_prefix():
    deframer = framing.Deframer(100)
    assert deframer.feed(framing.encode(b"x" * 100, 100)) == [b"x" * 100]
    with pytest.raises(RpcError) as refused:
        deframer.feed(b"\0" + (101).to_bytes(4, "big"))   # nothing of the body needed to refuse it
    assert refused.value.code == st.RESOURCE_EXHAUSTED and "101 bytes, above the limit of 100" in refused.value.message
    with pytest.raises(RpcError) as big:
        framing.encode(b"y" * 101, 100)
    assert big.value.code == st.RESOURCE_EXHAUSTED


def test_a_compressed_message_is_refused_since_none_was_negotiated():
    with pytest.raises(RpcError) as refused:
        framing.Deframer(100).feed(b"\x01\0\0\0\x01z")
    assert refused.value.code == st.INTERNAL and "compressed" in refused.value.message


@pytest.mark.parametrize("fields, expected", [
    ([(b"grpc-status", b"0")], Status(st.OK)),
    ([(b"grpc-status", b"14"), (b"grpc-message", b"down %25 for now")], Status(st.UNAVAILABLE, "down % for now")),
    ([(b"grpc-status", b"x")], Status(st.UNKNOWN)),
    ([(b"grpc-message", b"no status")], Status(st.UNKNOWN, "the server ended the call without grpc-status")),
])
def test_trailers_give_the_status(fields, expected):
    assert st.from_trailers(fields) == expected


@pytest.mark.parametrize("message", ["plain", "100% sure", "héllo\nwörld", "日本", "%zz%"])
def test_grpc_message_percent_encoding_round_trips(message):
    assert st.decode_message(encode_message(message)) == message


def test_malformed_percent_escapes_are_kept_as_they_are():
    assert st.decode_message(b"50%% off %4") == "50%% off %4"
    assert st.decode_message(b"%C3%A9%4a") == "éJ"


@pytest.mark.parametrize("http, code", [(b"400", st.INTERNAL), (b"401", st.UNAUTHENTICATED),
                                        (b"403", st.PERMISSION_DENIED), (b"404", st.UNIMPLEMENTED),
                                        (b"429", st.UNAVAILABLE), (b"503", st.UNAVAILABLE), (b"500", st.UNKNOWN)])
def test_a_response_without_grpc_status_maps_its_http_status(http, code):
    problem = st.response_problem([(b":status", http), (b"content-type", b"text/html")], end_stream=False)
    assert problem.code == code and http.decode() in problem.message


def test_response_headers_must_be_200_and_application_grpc_unless_trailers_only():
    grpc_ok = [(b":status", b"200"), (b"content-type", b"application/grpc+proto")]
    assert st.response_problem(grpc_ok, end_stream=False) is None
    html = st.response_problem([(b":status", b"200"), (b"content-type", b"text/html")], end_stream=False)
    assert html.code == st.UNKNOWN and "text/html" in html.message
    trailers_only = [(b":status", b"200"), (b"grpc-status", b"12")]   # no content-type needed
    assert st.response_problem(trailers_only, end_stream=True) is None


@pytest.mark.parametrize("code, expected", [(h2.REFUSED_STREAM, st.UNAVAILABLE), (h2.CANCEL, st.CANCELLED),
                                            (h2.ENHANCE_YOUR_CALM, st.RESOURCE_EXHAUSTED),
                                            (h2.INADEQUATE_SECURITY, st.PERMISSION_DENIED),
                                            (h2.NO_ERROR, st.INTERNAL), (h2.PROTOCOL_ERROR, st.INTERNAL)])
def test_a_reset_maps_to_the_status_the_spec_names(code, expected):
    status = st.from_reset(code)
    assert status.code == expected and st.h2_name(code) in status.message


def test_rpc_error_reads_as_name_and_message():
    assert str(RpcError(st.UNAVAILABLE, "gone")) == "UNAVAILABLE: gone"
    assert Status(st.OK).ok and Status(st.NOT_FOUND).error().name == "NOT_FOUND"


def test_request_headers_carry_the_call_and_its_metadata():
    headers = metadata.request_headers("/svc.S/M", "cp:15010", tls=True, timeout=1.5,
                                       metadata=[("authorization", "Bearer t"), ("trace-bin", b"\x01\x02\x03\x04")])
    assert headers[:6] == [(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/svc.S/M"),
                           (b":authority", b"cp:15010"), (b"te", b"trailers"), (b"content-type", b"application/grpc")]
    fields = dict(headers)
    assert fields[b"grpc-timeout"] == b"1500000u" and fields[b"authorization"] == b"Bearer t"
    assert fields[b"trace-bin"] == b"AQIDBA"   # base64 without padding
    assert b"grpc-timeout" not in dict(metadata.request_headers("/a/b", "x:1", tls=False, timeout=None))


@pytest.mark.parametrize("pair, why", [(("Upper", "v"), "metadata key 'Upper'"), (("grpc-x", "v"), "grpc-"),
                                       (("te", "x"), "metadata key 'te'"), (("k", "line\nbreak"), "printable"),
                                       (("k-bin", "text"), "takes bytes"), ((":path", "/x"), "metadata key")])
def test_bad_metadata_is_refused_with_the_key_named(pair, why):
    with pytest.raises(ValueError, match=why):
        metadata.encode_metadata([pair])
