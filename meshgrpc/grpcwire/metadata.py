"""The request headers of a gRPC call (grpc/grpc doc/PROTOCOL-HTTP2.md, "Requests"),
and the caller's custom metadata checked and encoded for them."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from meshgrpc.proxy.grpc_status import format_timeout

USER_AGENT = b"meshgrpc-grpcwire/0.1"
_KEY = re.compile(rb"[0-9a-z_.\-]+")
# Set by the client itself (or reserved by gRPC): custom metadata may not carry them.
_RESERVED = frozenset({b"content-type", b"te", b"user-agent", b"host", b"connection"})

Metadata = Iterable[tuple[str, str | bytes]]


def request_headers(path: str, authority: str, *, tls: bool, timeout: float | None,
                    metadata: Metadata = ()) -> list[tuple[bytes, bytes]]:
    """Pseudo-headers, gRPC's own headers, then the custom metadata."""
    headers = [(b":method", b"POST"), (b":scheme", b"https" if tls else b"http"), (b":path", path.encode()),
               (b":authority", authority.encode()), (b"te", b"trailers"),
               (b"content-type", b"application/grpc"), (b"user-agent", USER_AGENT)]
    if timeout is not None:
        headers.append((b"grpc-timeout", format_timeout(timeout)))
    headers += encode_metadata(metadata)
    return headers


def encode_metadata(metadata: Metadata) -> list[tuple[bytes, bytes]]:
    """Custom metadata as header fields; raises ValueError naming a bad key or value.
    Keys are lowercase ASCII ([0-9a-z_.-]); values of keys ending in -bin are bytes,
    sent base64 without padding; others are printable ASCII."""
    out = []
    for key, value in metadata:
        name = key.encode("ascii", errors="replace")
        if not _KEY.fullmatch(name) or name.startswith(b"grpc-") or name in _RESERVED:
            raise ValueError(f"metadata key {key!r}: must be lowercase [0-9a-z_.-], not grpc-* or {sorted(_RESERVED)}")
        out.append((name, _value(key, value)))
    return out


def _value(key: str, value: str | bytes) -> bytes:
    if key.endswith("-bin"):
        if not isinstance(value, bytes):
            raise ValueError(f"metadata {key!r}: a -bin key takes bytes")
        return base64.b64encode(value).rstrip(b"=")
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise ValueError(f"metadata {key!r}: the value must be printable ASCII text")
    return value.encode("ascii")
