"""Reading a downstream request's header block: the pseudo-headers, the client's
deadline, gRPC or plain HTTP, and the regular headers to forward. Pure: a
header list in, a `RequestHead` or a `Reject` out.

Header fields are kept as the very tuples the codec decoded, never rebuilt: a
field received never-indexed must be forwarded never-indexed (RFC 7541 §6.2.3).
Connection-specific fields are dropped (RFC 9113 §8.2.2), `host` becomes
:authority when there is none, and `te` is kept only as "trailers". The
codec refuses malformed blocks (RFC 9113 §8.1.1, §8.2: meshgrpc/codec/headers.py)
before they get here.
"""

from __future__ import annotations

import dataclasses

from meshgrpc.codec import NeverIndexed
from meshgrpc.proxy import grpc_status as gs

# Connection-specific headers never forwarded (RFC 9113 §8.2.2); `host` is folded
# into :authority.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                        b"upgrade", b"http2-settings", b"host"})


@dataclasses.dataclass(slots=True)
class RequestHead:
    method: tuple
    scheme: tuple
    path: tuple
    authority: tuple | None  # None when the request had neither :authority nor host
    timeout: float | None  # the client's grpc-timeout in seconds
    grpc: bool  # content-type application/grpc*
    regular: list  # the headers to forward, pseudo-headers excluded


@dataclasses.dataclass(frozen=True, slots=True)
class Reject:
    reason: str  # why the stream is reset with PROTOCOL_ERROR


def parse_request(headers) -> RequestHead | Reject:
    method = path = scheme = authority = timeout = None
    ctype = b""
    regular = []
    for h in headers:
        name = h[0]
        if name[:1] == b":":
            if name == b":path":
                path = h
            elif name == b":method":
                method = h
            elif name == b":authority":
                authority = h
            elif name == b":scheme":
                scheme = h
            else:
                return Reject(f"unknown pseudo-header {name!r}")
        elif name in HOP_BY_HOP:
            if name == b"host" and authority is None:
                authority = _renamed(h, b":authority")
        elif name == b"grpc-timeout":
            timeout = gs.parse_timeout(h[1])
        elif name == b"te" and h[1] != b"trailers":
            continue
        else:
            if name == b"content-type":
                ctype = h[1]
            regular.append(h)
    if method is None or path is None or scheme is None:
        return Reject("missing :method, :scheme or :path")
    return RequestHead(method, scheme, path, authority, timeout, ctype.startswith(b"application/grpc"), regular)


def _renamed(field, name: bytes):
    """`field`'s value under another name, never-indexed if `field` was."""
    if type(field) is NeverIndexed:
        return NeverIndexed(name, field[1])
    return (name, field[1])
