"""Trace headers per hop: x-request-id kept or generated, W3C traceparent kept
with a new span id (or a new trace), tracestate passed through."""

from __future__ import annotations

import random
import re

import pytest

from meshgrpc.proxy.trace import new_request_id, parse_traceparent, propagate

PARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UUID4 = re.compile(rb"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def bits(seed: int = 0):
    return random.Random(seed).getrandbits


def header(headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


def test_a_valid_traceparent_keeps_its_trace_and_gets_a_new_span():
    hop = propagate([(b"traceparent", PARENT), (b"tracestate", b"congo=t61rcWkgMzE"), (b"x-user", b"1")], bits())
    assert hop.trace_id == b"4bf92f3577b34da6a3ce929d0e0e4736" and hop.parent_span_id == b"00f067aa0ba902b7"
    assert hop.span_id != hop.parent_span_id and re.fullmatch(rb"[0-9a-f]{16}", hop.span_id)
    assert header(hop.headers, b"traceparent") == [b"00-" + hop.trace_id + b"-" + hop.span_id + b"-01"]
    assert header(hop.headers, b"tracestate") == [b"congo=t61rcWkgMzE"]
    assert header(hop.headers, b"x-user") == [b"1"]


def test_each_hop_makes_its_own_span():
    first = propagate([(b"traceparent", PARENT)], bits(1))
    second = propagate(first.headers, bits(2))
    assert first.trace_id == second.trace_id and second.parent_span_id == first.span_id != second.span_id


def test_a_missing_traceparent_starts_a_trace_and_drops_tracestate():
    hop = propagate([(b"tracestate", b"old=1")], bits())
    assert re.fullmatch(rb"[0-9a-f]{32}", hop.trace_id) and hop.parent_span_id is None
    assert header(hop.headers, b"traceparent") == [b"00-" + hop.trace_id + b"-" + hop.span_id + b"-00"]
    assert header(hop.headers, b"tracestate") == []


@pytest.mark.parametrize("value", [
    b"", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",              # too short
    b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",             # upper case
    b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",             # zero trace id
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",             # zero parent id
    b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",             # version ff
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",       # version 00 with more
    b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",             # bad separator
    b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",             # not hex
])
def test_invalid_traceparents_are_refused(value):
    assert parse_traceparent(value) is None


def test_a_later_version_is_read_by_its_first_four_fields_and_sent_as_version_00():
    later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next"
    assert parse_traceparent(later).trace_id == b"4bf92f3577b34da6a3ce929d0e0e4736"
    assert header(propagate([(b"traceparent", later)], bits()).headers, b"traceparent")[0].startswith(b"00-4bf9")


def test_two_traceparents_restart_the_trace():
    hop = propagate([(b"traceparent", PARENT), (b"traceparent", PARENT)], bits())
    assert hop.trace_id != b"4bf92f3577b34da6a3ce929d0e0e4736" and len(header(hop.headers, b"traceparent")) == 1


def test_x_request_id_is_kept_or_generated():
    assert propagate([(b"x-request-id", b"abc-123")], bits()).request_id == b"abc-123"
    generated = propagate([], bits()).request_id
    assert UUID4.match(generated)
    for bad in (b"", b"a b", b"x" * 257):
        hop = propagate([(b"x-request-id", bad)], bits())
        assert UUID4.match(hop.request_id) and header(hop.headers, b"x-request-id") == [hop.request_id]
    assert new_request_id(bits(1)) != new_request_id(bits(2))
