"""A call's outcome, read from what the server sent (grpc/grpc doc/PROTOCOL-HTTP2.md):
`grpc-status` and `grpc-message` in trailers or a trailers-only response, the HTTP
status when a server that is not gRPC answered (doc/http-grpc-status-mapping.md),
and the RST_STREAM codes the spec maps to gRPC codes. Pure: no I/O, no grpcio.
"""

from __future__ import annotations

import dataclasses

from meshgrpc import grpc_codes
from meshgrpc.codec import errors as h2

# grpc/grpc doc/statuscodes.md (the same numbers as meshgrpc.grpc_codes.CODES).
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED = 6, 7, 8, 9, 10
OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED = 11, 12, 13, 14, 15, 16

# doc/http-grpc-status-mapping.md: a response without grpc-status, by HTTP status.
_FROM_HTTP = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED, 404: UNIMPLEMENTED,
              429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE}
# PROTOCOL-HTTP2.md "Errors": RST_STREAM codes as gRPC codes (the rest are INTERNAL).
_FROM_RESET = {h2.REFUSED_STREAM: UNAVAILABLE, h2.CANCEL: CANCELLED, h2.ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED,
               h2.INADEQUATE_SECURITY: PERMISSION_DENIED}
_H2_NAMES = {value: name for name, value in vars(h2).items() if name.isupper() and isinstance(value, int)}


class RpcError(Exception):
    """A call that did not end OK: `code` is the gRPC status code (a number, see
    meshgrpc.grpc_codes), `message` says why. str() is "NAME: message"."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def name(self) -> str:
        return grpc_codes.name(self.code)

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"

    def __repr__(self) -> str:
        return f"RpcError({self.name}, {self.message!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """The status a call ended with (OK included)."""

    code: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == OK

    @property
    def name(self) -> str:
        return grpc_codes.name(self.code)

    def error(self) -> RpcError:
        return RpcError(self.code, self.message)


def from_trailers(headers) -> Status:
    """The status in a trailer block, or in a trailers-only response's headers."""
    code = message = None
    for name, value in headers:
        if name == b"grpc-status":
            code = int(value) if value.isdigit() else UNKNOWN
        elif name == b"grpc-message":
            message = decode_message(bytes(value))
    if code is None:
        return Status(UNKNOWN, "the server ended the call without grpc-status")
    return Status(code, message or "")


def response_problem(headers, end_stream: bool) -> Status | None:
    """Why response headers cannot start a gRPC response (None when they can):
    an HTTP status other than 200 (unless it is a trailers-only response carrying
    grpc-status), or a content-type that is not application/grpc."""
    fields = dict((bytes(n), bytes(v)) for n, v in headers)
    http = fields.get(b":status", b"")
    if end_stream and b"grpc-status" in fields:
        return None
    if http != b"200":
        code = _FROM_HTTP.get(int(http) if http.isdigit() else 0, UNKNOWN)
        return Status(code, f"HTTP status {http.decode(errors='replace')} without grpc-status")
    if not fields.get(b"content-type", b"").startswith(b"application/grpc"):
        ctype = fields.get(b"content-type", b"").decode(errors="replace")
        return Status(UNKNOWN, f"response content-type {ctype!r} is not application/grpc")
    return None


def from_reset(code: int) -> Status:
    """A stream reset with RST_STREAM `code`, by the server or by the codec for a
    malformed response."""
    return Status(_FROM_RESET.get(code, INTERNAL), f"the stream was reset with {h2_name(code)}")


def h2_name(code: int) -> str:
    """An HTTP/2 error code's name (RFC 9113 §7), or its number."""
    return _H2_NAMES.get(code, f"error code {code}")


def decode_message(value: bytes) -> str:
    """A percent-encoded grpc-message as text; malformed escapes are kept as they are
    (PROTOCOL-HTTP2.md: "clients MUST NOT error out on an invalid percent-encoding")."""
    out, i, n = bytearray(), 0, len(value)
    while i < n:
        b = value[i]
        if b == 0x25 and i + 2 < n and _is_hex(value[i + 1:i + 3]):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(b)
            i += 1
    return out.decode("utf-8", errors="replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)
