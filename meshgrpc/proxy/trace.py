"""Trace headers for each hop through the proxy, pure: `x-request-id` kept or
generated, and W3C Trace Context (https://www.w3.org/TR/trace-context/)
propagated with a new span id per hop, so that traces stitch across proxies.

`propagate(headers, randbits)` takes the request's headers as the relay has
them (lower-case bytes names) and returns the `Hop`: the ids for the access log
and the headers to send upstream. Rules:
- x-request-id: the client's value if it has one (non-empty, at most 256
  printable ASCII characters), else a new random UUID (version 4 layout).
- traceparent (§3.2): a valid one keeps its trace id and flags; this hop gets a
  new span id, sent as the parent-id upstream. An absent or invalid one (or more
  than one) starts a new trace: random trace id and span id, flags 00 (not
  sampled: the proxy records nothing itself). Upstream always gets version 00,
  the only version this implementation knows (§3.2.4: a higher version is
  parsed by its first four fields).
- tracestate (§3.3) passes through unchanged with a valid traceparent, and is
  dropped when the trace restarts (it describes the old trace).
Randomness comes from `randbits` (the relay's seeded random source in tests).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from meshgrpc.codec import NeverIndexed

REQUEST_ID = b"x-request-id"
TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
MAX_REQUEST_ID = 256

Headers = list[tuple[bytes, bytes]]
_HEX = frozenset(b"0123456789abcdef")
_TRACE_FIELDS = frozenset((REQUEST_ID, TRACEPARENT, TRACESTATE))
_BITS_64, _BITS_128 = (1 << 64) - 1, (1 << 128) - 1


@dataclasses.dataclass(frozen=True, slots=True)
class TraceContext:
    """A parsed traceparent: 32 and 16 lower-case hex digits, and the flags byte's two."""

    trace_id: bytes
    parent_id: bytes
    flags: bytes


class Hop(NamedTuple):  # (a tuple: built once per call, the cheapest record there is)
    request_id: bytes
    trace_id: bytes
    span_id: bytes                # this hop's span: the parent-id upstream sees
    parent_span_id: bytes | None  # the client's span; None when the trace started here
    headers: Headers              # the request headers with the three set for upstream, last


def parse_traceparent(value: bytes) -> TraceContext | None:
    """The traceparent's fields, or None when it is not valid (§3.2.2)."""
    if len(value) < 55 or (len(value) > 55 and value[55:56] != b"-"):
        return None
    version, trace_id, parent_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    if not all(_is_hex(f) for f in (version, trace_id, parent_id, flags)):
        return None
    if version == b"ff" or (version == b"00" and len(value) != 55):
        return None
    if trace_id == b"0" * 32 or parent_id == b"0" * 16:
        return None
    return TraceContext(trace_id, parent_id, flags)


def traceparent(trace_id: bytes, span_id: bytes, flags: bytes) -> bytes:
    return b"00-" + trace_id + b"-" + span_id + b"-" + flags


def propagate(headers: Headers, randbits: Callable[[int], int]) -> Hop:
    """The hop's ids and the headers to send upstream (see the module docstring)."""
    request_id, parents, state, rest = _split(headers)
    # One draw for every id this hop may need: 128 bits of request id, 64 of span, 128 of trace.
    drawn = randbits(320)
    if request_id is None:
        request_id = _uuid4(drawn >> 192)
    context = parse_traceparent(parents[0]) if len(parents) == 1 else None
    span_id = _nonzero_hex(b"%016x" % ((drawn >> 128) & _BITS_64), randbits, 64)
    if context is None:
        trace_id, flags, parent = _nonzero_hex(b"%032x" % (drawn & _BITS_128), randbits, 128), b"00", None
        state = []
    else:
        trace_id, flags, parent = context.trace_id, context.flags, context.parent_id
    # Last and never indexed: values new on every call would churn the upstream
    # HPACK table and defeat the cached encoding of the fields before them.
    # (`rest` is _split's own new list: extended in place, not copied again.)
    rest.append(NeverIndexed(REQUEST_ID, request_id))
    rest.append(NeverIndexed(TRACEPARENT, traceparent(trace_id, span_id, flags)))
    rest.extend(NeverIndexed(TRACESTATE, v) for v in state)
    return Hop(request_id, trace_id, span_id, parent, rest)


def new_request_id(randbits: Callable[[int], int]) -> bytes:
    """A random UUID in the version 4 layout (RFC 9562 §5.4), as x-request-id."""
    return _uuid4(randbits(128))


def _uuid4(n: int) -> bytes:
    """128 random bits in the UUID layout: version nibble 4, variant bits 10."""
    h = b"%032x" % n
    return b"%s-%s-4%s-%c%s-%s" % (h[:8], h[8:12], h[13:16], b"89ab"[n & 3], h[17:20], h[20:])


def _split(headers: Headers) -> tuple[bytes | None, list[bytes], list[bytes], Headers]:
    rest = [h for h in headers if h[0] not in _TRACE_FIELDS]
    if len(rest) == len(headers):  # the client sent none of them
        return None, [], [], rest
    request_id, parents, state = None, [], []
    for name, value in headers:
        if name == REQUEST_ID:
            if request_id is None and _valid_request_id(value):
                request_id = value
        elif name == TRACEPARENT:
            parents.append(value)
        elif name == TRACESTATE:
            state.append(value)
    return request_id, parents, state, rest


def _valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= MAX_REQUEST_ID and all(0x21 <= c <= 0x7E for c in value)


def _is_hex(field: bytes) -> bool:
    return all(c in _HEX for c in field)


def _nonzero_hex(digits: bytes, randbits: Callable[[int], int], bits: int) -> bytes:
    """`digits`, or fresh random ones of `bits` bits if they are all zeros (an all-zero id is invalid)."""
    while not digits.strip(b"0"):
        digits = b"%0*x" % (bits // 4, randbits(bits))
    return digits
