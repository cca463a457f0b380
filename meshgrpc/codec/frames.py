"""HTTP/2 frames on the wire (RFC 9113 §4 and §6): the 9-byte frame header, and
each frame type serialized; payload fields parsed from the received buffer in
place. There are no frame objects: the connection reads the header, then hands
the payload's offsets in the receive buffer to the handler of its type, and a
DATA payload leaves as a memoryview slice of that buffer (never copied).

Serializers return the bytes to queue; a DATA frame is two pieces (header, then
the caller's payload object untouched) so that large payloads are not copied
here either.
"""

from __future__ import annotations

from meshgrpc.codec.errors import FLOW_CONTROL_ERROR, PROTOCOL_ERROR

DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

HEADER_SIZE = 9
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 §3.4

# SETTINGS identifiers (RFC 9113 §6.5.2)
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_MAX_FRAME_SIZE = 16384
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1
MAX_WINDOW = (1 << 31) - 1
DEFAULT_WINDOW = 65535
_STREAM_MASK = 0x7FFFFFFF


def header(length: int, ftype: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte frame header (RFC 9113 §4.1); the reserved bit is sent as 0."""
    return (length.to_bytes(3, "big") + bytes((ftype, flags))
            + (stream_id & _STREAM_MASK).to_bytes(4, "big"))


def parse_header(buf: bytes, pos: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at buf[pos:pos+9]; the
    reserved bit of the stream id is ignored (RFC 9113 §4.1)."""
    return ((buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2], buf[pos + 3], buf[pos + 4],
            int.from_bytes(buf[pos + 5:pos + 9], "big") & _STREAM_MASK)


def u32(buf: bytes, pos: int) -> int:
    return int.from_bytes(buf[pos:pos + 4], "big")


def u31(buf: bytes, pos: int) -> int:
    """A 31-bit value after a reserved bit (stream ids, window increments)."""
    return int.from_bytes(buf[pos:pos + 4], "big") & _STREAM_MASK


# -- serializers --------------------------------------------------------------------

def data_header(stream_id: int, length: int, end_stream: bool) -> bytes:
    return header(length, DATA, FLAG_END_STREAM if end_stream else 0, stream_id)


def header_block(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS (+ CONTINUATION frames when the block exceeds `max_frame`)."""
    flags = FLAG_END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return header(len(block), HEADERS, flags | FLAG_END_HEADERS, stream_id) + block
    parts = [header(max_frame, HEADERS, flags, stream_id), block[:max_frame]]
    pos = max_frame
    while pos < len(block):
        chunk = block[pos:pos + max_frame]
        pos += len(chunk)
        last = FLAG_END_HEADERS if pos >= len(block) else 0
        parts += (header(len(chunk), CONTINUATION, last, stream_id), chunk)
    return b"".join(parts)


def settings(values: dict[int, int]) -> bytes:
    payload = b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values.items())
    return header(len(payload), SETTINGS, 0, 0) + payload


SETTINGS_ACK = header(0, SETTINGS, FLAG_ACK, 0)


def ping(payload: bytes, ack: bool) -> bytes:
    return header(8, PING, FLAG_ACK if ack else 0, 0) + payload


def rst_stream(stream_id: int, code: int) -> bytes:
    return header(4, RST_STREAM, 0, stream_id) + code.to_bytes(4, "big")


def window_update(stream_id: int, increment: int) -> bytes:
    return header(4, WINDOW_UPDATE, 0, stream_id) + increment.to_bytes(4, "big")


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return (header(8 + len(debug), GOAWAY, 0, 0) + last_stream_id.to_bytes(4, "big")
            + code.to_bytes(4, "big") + debug)


def setting_problem(ident: int, value: int, from_server: bool):
    """(error code, message) if a received setting's value is not allowed
    (RFC 9113 §6.5.2), else None. Unknown settings are allowed (and ignored)."""
    if ident == ENABLE_PUSH and (value > 1 or (value and from_server)):
        return PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1, or 1 from a server"
    if ident == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
        return FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"
    if ident == MAX_FRAME_SIZE and not DEFAULT_MAX_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT:
        return PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range"
    return None


def parse_settings(buf: bytes, start: int, end: int):
    """(identifier, value) pairs of a SETTINGS payload, in order (RFC 9113 §6.5.1)."""
    for pos in range(start, end, 6):
        yield (buf[pos] << 8) | buf[pos + 1], u32(buf, pos + 2)
