"""gRPC on the wire, as much as the relay needs without parsing payloads: status
codes, trailers-only responses for calls the proxy fails itself, `grpc-timeout`
parsing/formatting and `grpc-message` percent-encoding (per the gRPC over HTTP/2
spec, doc/PROTOCOL-HTTP2.md in grpc/grpc)."""

from __future__ import annotations

OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14

# Statuses that count against the endpoint (outlier detection, balancer): the
# server or the path to it failed, as opposed to the caller's own request/deadline.
ENDPOINT_FAILURES = frozenset({UNKNOWN, INTERNAL, UNAVAILABLE})

# HTTP status for plain HTTP/2 requests the proxy fails itself.
HTTP_FOR_STATUS = {UNIMPLEMENTED: 404, UNAVAILABLE: 503, DEADLINE_EXCEEDED: 504, INTERNAL: 502,
                   CANCELLED: 499, RESOURCE_EXHAUSTED: 429, PERMISSION_DENIED: 403}

_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_MAX_DIGITS = 99_999_999


def parse_timeout(value: bytes) -> float | None:
    """`grpc-timeout` (1-8 ASCII digits then a unit) in seconds; None if malformed."""
    if not 2 <= len(value) <= 9:
        return None
    digits, unit = value[:-1], value[-1:]
    scale = _UNITS.get(unit)
    if scale is None or not digits.isdigit():
        return None
    return int(digits) * scale


def format_timeout(seconds: float) -> bytes:
    """The finest-unit `grpc-timeout` that fits 8 digits, rounded up (at least 1
    unit) so the upstream never gets less time than the proxy computed."""
    ns = max(round(seconds * 1e9), 1)
    for unit, scale in ((b"n", 1), (b"u", 1_000), (b"m", 1_000_000), (b"S", 10**9),
                        (b"M", 60 * 10**9), (b"H", 3600 * 10**9)):
        n = -(-ns // scale)
        if n <= _MAX_DIGITS:
            return b"%d%s" % (n, unit)
    return b"%dH" % _MAX_DIGITS


def encode_message(message: str) -> bytes:
    """Percent-encodes a status message: UTF-8, bytes outside 0x20-0x7E and '%' escaped."""
    out = bytearray()
    for b in message.encode("utf-8"):
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def trailers_only(status: int, message: str) -> list[tuple[bytes, bytes]]:
    """A complete gRPC response in one HEADERS frame (sent with END_STREAM)."""
    return [(b":status", b"200"), (b"content-type", b"application/grpc"),
            (b"grpc-status", b"%d" % status), (b"grpc-message", encode_message(message))]


def trailers(status: int, message: str) -> list[tuple[bytes, bytes]]:
    """Trailers ending a gRPC response whose headers already went out."""
    return [(b"grpc-status", b"%d" % status), (b"grpc-message", encode_message(message))]


def status_of(headers) -> int | None:
    """The grpc-status in a header/trailer block, or None."""
    for name, value in headers:
        if name == b"grpc-status":
            try:
                return int(value)
            except ValueError:
                return UNKNOWN
    return None
