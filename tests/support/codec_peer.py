"""Test seams for meshgrpc.codec: a handler that records every callback, and raw
HTTP/2 frames built by hand (independently of the codec's own serializers)."""

from __future__ import annotations

import struct

from tests.support.clock import FakeClock  # noqa: F401 (codec tests import it from here)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Recorder:
    """Handler recording callbacks as tuples; memoryviews copied to bytes."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def _add(self, *event) -> None:
        self.events.append(tuple(bytes(x) if isinstance(x, memoryview) else x for x in event))

    def on_request(self, sid, headers, end_stream):
        self._add("request", sid, tuple(headers), end_stream)

    def on_response(self, sid, headers, end_stream):
        self._add("response", sid, tuple(headers), end_stream)

    def on_trailers(self, sid, headers):
        self._add("trailers", sid, tuple(headers))

    def on_data(self, sid, data, flow_len, end_stream):
        self._add("data", sid, data, flow_len, end_stream)

    def on_reset(self, sid, code):
        self._add("reset", sid, code)

    def on_window_update(self, sid):
        self._add("window_update", sid)

    def on_settings(self):
        self._add("settings")

    def on_goaway(self, code, last_stream_id, debug):
        self._add("goaway", code, last_stream_id, debug)

    def on_ping_ack(self, payload):
        self._add("ping_ack", payload)

    def take(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + struct.pack(">I", sid) + payload


def settings(**values) -> bytes:
    ids = {"header_table_size": 1, "enable_push": 2, "max_concurrent_streams": 3,
           "initial_window_size": 4, "max_frame_size": 5, "max_header_list_size": 6}
    return frame(4, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items()))


SETTINGS_ACK = frame(4, 1, 0)


def data(sid: int, payload: bytes, end_stream: bool = False, pad: int | None = None) -> bytes:
    flags = 1 if end_stream else 0
    if pad is not None:
        return frame(0, flags | 0x8, sid, bytes((pad,)) + payload + b"\0" * pad)
    return frame(0, flags, sid, payload)


def headers(sid: int, block: bytes, end_stream: bool = False, end_headers: bool = True) -> bytes:
    return frame(1, (1 if end_stream else 0) | (4 if end_headers else 0), sid, block)


def continuation(sid: int, block: bytes, end_headers: bool = True) -> bytes:
    return frame(9, 4 if end_headers else 0, sid, block)


def rst_stream(sid: int, code: int) -> bytes:
    return frame(3, 0, sid, struct.pack(">I", code))


def window_update(sid: int, increment: int) -> bytes:
    return frame(8, 0, sid, struct.pack(">I", increment))


def ping(payload: bytes = b"\0" * 8, ack: bool = False) -> bytes:
    return frame(6, 1 if ack else 0, 0, payload)


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(7, 0, 0, struct.pack(">II", last_stream_id, code) + debug)


def parse_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each frame in `data` (client preface skipped)."""
    if data.startswith(PREFACE):
        data = data[len(PREFACE):]
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        ftype, flags = data[pos + 3], data[pos + 4]
        sid = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
        out.append((ftype, flags, sid, data[pos + 9:pos + 9 + length]))
        pos += 9 + length
    return out


def rst_codes(data: bytes) -> dict[int, int]:
    """Stream id -> error code of each RST_STREAM in `data`."""
    return {sid: int.from_bytes(p, "big") for t, _, sid, p in parse_frames(data) if t == 3}


def goaway_codes(data: bytes) -> list[int]:
    return [int.from_bytes(p[4:8], "big") for t, _, _, p in parse_frames(data) if t == 7]


GRPC_REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/svc.S/M"),
                (b":authority", b"svc"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
GRPC_RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
GRPC_TRAILERS = [(b"grpc-status", b"0")]


class RawPeer:
    """The other end as raw frames: an hpack encoder (the `hpack` package, not
    the codec's) and the bytes it has sent; `conn` is the codec under test."""

    def __init__(self, conn, recorder: Recorder) -> None:
        import hpack

        self.conn, self.recorder = conn, recorder
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()

    def block(self, headers) -> bytes:
        return self.encoder.encode(headers, huffman=False)

    def send(self, *chunks: bytes) -> list[tuple]:
        """Feed frames to the codec; the callbacks they caused."""
        for chunk in chunks:
            self.conn.receive(chunk)
        return self.recorder.take()

    def request(self, sid: int, headers=GRPC_REQUEST, end_stream: bool = False) -> list[tuple]:
        return self.send(headers_frame(sid, self.block(headers), end_stream))

    def out(self) -> bytes:
        return self.conn.data_to_send()


def headers_frame(sid: int, block: bytes, end_stream: bool = False) -> bytes:
    return headers(sid, block, end_stream)


def server(limits=None, clock=None, counters=None) -> RawPeer:
    """A server-role codec that has read a client's preface and SETTINGS (and
    whose own preface output was taken)."""
    from meshgrpc.codec import Connection, Limits

    rec = Recorder()
    conn = Connection(rec, client=False, limits=limits or Limits(), counters=counters,
                      clock=clock or FakeClock())
    peer = RawPeer(conn, rec)
    peer.send(PREFACE + settings())
    conn.data_to_send()
    rec.take()
    return peer


def client(limits=None, clock=None, counters=None, **peer_settings) -> RawPeer:
    """A client-role codec that has read a server's SETTINGS."""
    from meshgrpc.codec import Connection, Limits

    rec = Recorder()
    conn = Connection(rec, client=True, limits=limits or Limits(), counters=counters,
                      clock=clock or FakeClock())
    peer = RawPeer(conn, rec)
    peer.send(settings(**peer_settings))
    conn.data_to_send()
    rec.take()
    return peer
