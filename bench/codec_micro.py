"""Micro-benchmark of the relay's HTTP/2 codec (not a test, not part of `make bench`).

    .venv/bin/python -m bench.codec_micro [--calls 20000] [--rounds 5]

The frames of relayed unary gRPC calls, without sockets: a downstream
connection (server role) receives each call's request HEADERS + DATA(END_STREAM)
and a connection WINDOW_UPDATE, the relay opens an upstream stream (client role)
and sends them on; the upstream connection receives response HEADERS + DATA +
trailers and a WINDOW_UPDATE, and the relay sends those back downstream,
acknowledging every DATA. Each call's bytes are fed as one read per side, and
both sides' output is taken after each read (as the relay writes once per read).

Compared, in interleaved rounds (each in its own process): h2 as the relay
configured it (tests/support/h2_oracle.py), the codec compiled, and the codec's
plain Python modules (MESHGRPC_CODEC_PURE=1). Reported: median µs per call.
`--writes` measures how the output is best handed to the transport: one
transport.write of the joined bytes (what data_to_send returns) against
transport.writelines of the pieces, on a uvloop socket pair, with a relayed
call's downstream output (HEADERS, DATA header, payload view, trailers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/helloworld.Greeter/SayHello"),
           (b":authority", b"127.0.0.1:15001"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
           (b"user-agent", b"grpc-python/1.85.3 grpc-c/52.0.0 (linux; chttp2)"),
           (b"grpc-accept-encoding", b"identity, deflate, gzip")]
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc"),
            (b"grpc-accept-encoding", b"identity, deflate, gzip")]
TRAILERS = [(b"grpc-status", b"0")]
MESSAGE = b"\0\0\0\0\x64" + b"m" * 100  # a 100-byte gRPC message


def _frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + payload


def _wire(calls: int) -> tuple[bytes, list[bytes], bytes, list[bytes]]:
    """(client handshake, each call's client bytes, server handshake, each call's server bytes)."""
    import hpack

    settings = _frame(4, 0, 0, (4).to_bytes(2, "big") + (1 << 20).to_bytes(4, "big"))
    ack = _frame(4, 1, 0, b"")
    big_window = _frame(8, 0, 0, ((16 << 20) - 65535).to_bytes(4, "big"))
    client_hs = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + ack + big_window
    server_hs = settings + ack + big_window
    cenc, senc = hpack.Encoder(), hpack.Encoder()
    creq, sresp = [], []
    for i in range(calls):
        sid = 1 + 2 * i
        creq.append(_frame(1, 4, sid, cenc.encode(REQUEST, huffman=True)) + _frame(0, 1, sid, MESSAGE)
                    + _frame(8, 0, 0, len(MESSAGE).to_bytes(4, "big")))
        sresp.append(_frame(1, 4, sid, senc.encode(RESPONSE, huffman=True)) + _frame(0, 0, sid, MESSAGE)
                     + _frame(1, 5, sid, senc.encode(TRAILERS, huffman=True))
                     + _frame(8, 0, 0, len(MESSAGE).to_bytes(4, "big")))
    return client_hs, creq, server_hs, sresp


class _CodecRelay:
    """The relay's use of meshgrpc.codec, reduced to one call path."""

    def __init__(self) -> None:
        from meshgrpc.codec import Connection

        self.down = Connection(_Down(self), client=False)
        self.up = Connection(_Up(self), client=True)
        self.up_of: dict[int, int] = {}
        self.down_of: dict[int, int] = {}

    def feed_down(self, data: bytes) -> None:
        self.down.receive(data)

    def feed_up(self, data: bytes) -> None:
        self.up.receive(data)

    def take(self):
        return self.down.data_to_send(), self.up.data_to_send()


class _Down:
    def __init__(self, relay: _CodecRelay) -> None:
        self.r = relay

    def on_request(self, sid, headers, end_stream):
        up = self.r.up
        up_sid = up.next_stream_id()
        up.send_headers(up_sid, headers, end_stream)
        self.r.up_of[sid] = up_sid
        self.r.down_of[up_sid] = sid

    def on_data(self, sid, data, flow_len, end_stream):
        self.r.up.send_data(self.r.up_of[sid], data, end_stream)
        self.r.down.acknowledge(sid, flow_len)

    def on_trailers(self, sid, headers):
        self.r.up.send_headers(self.r.up_of[sid], headers, True)

    def on_response(self, sid, headers, end_stream):
        raise AssertionError

    def on_reset(self, sid, code):
        pass

    def on_window_update(self, sid):
        pass

    def on_settings(self):
        pass

    def on_goaway(self, code, last, debug):
        pass

    def on_ping_ack(self, payload):
        pass


class _Up(_Down):
    def on_response(self, sid, headers, end_stream):
        self.r.down.send_headers(self.r.down_of[sid], headers, end_stream)

    def on_data(self, sid, data, flow_len, end_stream):
        self.r.down.send_data(self.r.down_of[sid], data, end_stream)
        self.r.up.acknowledge(sid, flow_len)

    def on_trailers(self, sid, headers):
        down_sid = self.r.down_of.pop(sid)
        self.r.up_of.pop(down_sid)
        self.r.down.send_headers(down_sid, headers, True)


class _H2Relay:
    """The same with h2 as the relay configures it today."""

    def __init__(self) -> None:
        from h2 import events as e

        from tests.support.h2_oracle import new_connection

        self.down, self.up = new_connection(False), new_connection(True)
        self.up_of: dict[int, int] = {}
        self.down_of: dict[int, int] = {}
        self.down_handlers = {e.RequestReceived: self._request, e.DataReceived: self._request_data}
        self.up_handlers = {e.ResponseReceived: self._response, e.DataReceived: self._response_data,
                            e.TrailersReceived: self._trailers}

    def feed_down(self, data: bytes) -> None:
        handlers = self.down_handlers
        for ev in self.down.receive_data(data):
            h = handlers.get(ev.__class__)
            if h is not None:
                h(ev)

    def feed_up(self, data: bytes) -> None:
        handlers = self.up_handlers
        for ev in self.up.receive_data(data):
            h = handlers.get(ev.__class__)
            if h is not None:
                h(ev)

    def take(self):
        return self.down.data_to_send(), self.up.data_to_send()

    def _request(self, ev) -> None:
        sid = self.up.get_next_available_stream_id()
        self.up.send_headers(sid, ev.headers, end_stream=ev.stream_ended is not None)
        self.up_of[ev.stream_id] = sid
        self.down_of[sid] = ev.stream_id

    def _request_data(self, ev) -> None:
        self.up.send_data(self.up_of[ev.stream_id], ev.data, end_stream=ev.stream_ended is not None)
        self.down.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)

    def _response(self, ev) -> None:
        self.down.send_headers(self.down_of[ev.stream_id], ev.headers)

    def _response_data(self, ev) -> None:
        self.down.send_data(self.down_of[ev.stream_id], ev.data)
        self.up.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)

    def _trailers(self, ev) -> None:
        down_sid = self.down_of.pop(ev.stream_id)
        self.up_of.pop(down_sid)
        self.down.send_headers(down_sid, ev.headers, end_stream=True)


def run_once(impl: str, calls: int) -> float:
    """µs per relayed call for one implementation, in this process."""
    client_hs, creq, server_hs, sresp = _wire(calls)
    relay = _H2Relay() if impl == "h2" else _CodecRelay()
    relay.take()
    relay.feed_down(client_hs)
    relay.feed_up(server_hs)
    relay.take()
    t0 = time.perf_counter()
    for i in range(calls):
        relay.feed_down(creq[i])
        relay.take()
        relay.feed_up(sresp[i])
        relay.take()
    return (time.perf_counter() - t0) / calls * 1e6


def writes(calls: int) -> dict[str, float]:
    """µs per call of write(b"".join(pieces)) and of writelines(pieces), uvloop."""
    import asyncio
    import socket

    import uvloop

    pieces = [_frame(1, 4, 1, b"\x88\xc0\xbf"), _frame(0, 0, 1, b"")[:9], memoryview(MESSAGE),
              _frame(1, 5, 1, b"\xbe")]

    class Sink(asyncio.Protocol):
        def data_received(self, data):
            pass

    async def measure() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        tr, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        sink, _ = await loop.create_connection(Sink, sock=b)
        out = {}
        for name in ("write(join)", "writelines", "write(join)", "writelines"):
            t0 = time.perf_counter()
            for i in range(calls):
                if name == "writelines":
                    tr.writelines(pieces)
                else:
                    tr.write(b"".join(pieces))
                if i % 64 == 0:
                    await asyncio.sleep(0)  # let the peer drain
            out[name] = (time.perf_counter() - t0) / calls * 1e6
        tr.close()
        sink.close()
        return out

    return uvloop.run(measure())


def _child(impl: str, calls: int) -> float:
    env = dict(os.environ)
    env.pop("MESHGRPC_CODEC_PURE", None)
    if impl == "codec-pure":
        env["MESHGRPC_CODEC_PURE"] = "1"
    code = (f"import json, bench.codec_micro as m; "
            f"print(json.dumps(m.run_once({impl.split('-')[0]!r}, {calls})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--writes", action="store_true", help="write(join) vs writelines")
    args = ap.parse_args()
    if args.writes:
        runs = [writes(args.calls) for _ in range(args.rounds)]
        for name in ("write(join)", "writelines"):
            print(f"  {name:12s} median {statistics.median(r[name] for r in runs):6.2f} µs per call")
        return
    impls = ["h2", "codec", "codec-pure"]
    results: dict = {name: [] for name in impls}
    for r in range(args.rounds):
        for impl in impls[r % 3:] + impls[:r % 3]:  # rotate who runs first
            results[impl].append(_child(impl, args.calls))
    base = statistics.median(results["h2"])
    print(f"{args.calls} relayed unary calls per run, {args.rounds} interleaved rounds; µs per call")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"  {name:12s} median {med:7.1f}  (min {min(values):6.1f}, max {max(values):6.1f})  "
              f"{base / med:5.2f}x faster than h2")


if __name__ == "__main__":
    main()
