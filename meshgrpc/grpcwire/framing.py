"""gRPC's length-prefixed messages (grpc/grpc doc/PROTOCOL-HTTP2.md,
"Length-Prefixed-Message"): one flag byte (1 = compressed), a 4-byte big-endian
length, then the message. Pure: bytes in, messages out.

Compression is never negotiated: requests carry no grpc-encoding and announce
none in grpc-accept-encoding, and the server announces none either, so a
compressed message from the peer is a protocol violation (INTERNAL, as
grpc-core reports it).
"""

from __future__ import annotations

from meshgrpc.grpcwire.status import INTERNAL, RESOURCE_EXHAUSTED, RpcError

PREFIX = 5


def encode(message: bytes, limit: int) -> bytes:
    """`message` with its prefix; RESOURCE_EXHAUSTED when it is longer than `limit`."""
    if len(message) > limit:
        raise RpcError(RESOURCE_EXHAUSTED, f"sending a message of {len(message)} bytes, above the limit of {limit}")
    return b"\0" + len(message).to_bytes(4, "big") + message


class Deframer:
    """Cuts a call's DATA into messages. A message longer than `limit` is refused
    when its prefix arrives, before any of it is held (RESOURCE_EXHAUSTED), so
    one call holds at most one partial message of at most `limit` bytes."""

    __slots__ = ("limit", "_buf", "_length")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._length: int | None = None  # of the message being read; None while reading a prefix

    def feed(self, data) -> list[bytes]:
        """The messages `data` completes, in order (copied out of `data`)."""
        out = []
        buf = self._buf
        buf += data
        while True:
            if self._length is None:
                if len(buf) < PREFIX:
                    break
                self._length = self._read_prefix(buf)
            end = PREFIX + self._length
            if len(buf) < end:
                break
            with memoryview(buf) as view:
                out.append(bytes(view[PREFIX:end]))
            del buf[:end]
            self._length = None
        return out

    def _read_prefix(self, buf: bytearray) -> int:
        if buf[0] & 1:
            raise RpcError(INTERNAL, "a compressed message arrived; no compression was negotiated")
        length = int.from_bytes(buf[1:PREFIX], "big")
        if length > self.limit:
            raise RpcError(RESOURCE_EXHAUSTED,
                           f"received a message of {length} bytes, above the limit of {self.limit}")
        return length

    @property
    def held(self) -> int:
        """Bytes of a partial message (or prefix) held."""
        return len(self._buf)
