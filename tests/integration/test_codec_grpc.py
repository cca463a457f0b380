"""meshgrpc.codec against grpc-core on loopback, both roles: a real grpcio client
calls an echo server built on the codec (Huffman-coded headers, BDP pings,
WINDOW_UPDATEs, a message larger than every window), and a codec client calls a
real grpc.aio server (response, trailers, flow control)."""

from __future__ import annotations

import asyncio

import grpc

from meshgrpc.codec import Connection

DEADLINE = 20.0


class _Handler:
    """Ignores every callback not overridden (the codec binds all of them)."""

    def on_request(self, sid, headers, end_stream): pass
    def on_response(self, sid, headers, end_stream): pass
    def on_trailers(self, sid, headers): pass
    def on_data(self, sid, data, flow_len, end_stream): pass
    def on_reset(self, sid, code): pass
    def on_window_update(self, sid): pass
    def on_settings(self): pass
    def on_goaway(self, code, last_stream_id, debug): pass
    def on_ping_ack(self, payload): pass


class EchoServer(_Handler, asyncio.Protocol):
    """A gRPC echo on the codec: the request body comes back as the response."""

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.conn = Connection(self, client=False)
        self.bodies: dict[int, bytearray] = {}
        self.pending: dict[int, memoryview] = {}
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.conn.receive(data)
        self.transport.write(self.conn.data_to_send())

    def on_request(self, sid, headers, end_stream):
        self.bodies[sid] = bytearray()

    def on_data(self, sid, data, flow_len, end_stream):
        self.bodies[sid] += data
        self.conn.acknowledge(sid, flow_len)
        if end_stream:
            self.conn.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
            self.pending[sid] = memoryview(bytes(self.bodies.pop(sid)))
            self._pump(sid)

    def on_window_update(self, sid):
        for s in list(self.pending) if sid == 0 else [sid]:
            self._pump(s)

    def on_settings(self):
        for sid in list(self.pending):
            self._pump(sid)

    def _pump(self, sid: int) -> None:
        body = self.pending.get(sid)
        if body is None:
            return
        n = min(len(body), self.conn.send_window(sid))
        if n:
            self.conn.send_data(sid, body[:n])
            body = body[n:]
        if len(body):
            self.pending[sid] = body
            return
        del self.pending[sid]
        self.conn.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)


def _grpc_client_calls(port: int) -> list[bytes]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary("/echo.Echo/Echo")
        out = [echo(bytes([i]) * (i * 40), timeout=DEADLINE, metadata=[("x-n", str(i))]) for i in range(100)]
        out.append(echo(b"z" * (3 << 20), timeout=DEADLINE))  # beyond the 1 MiB stream window
        return out


async def _serve_grpcio_client() -> list[bytes]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoServer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        return await asyncio.wait_for(loop.run_in_executor(None, _grpc_client_calls, port), DEADLINE * 2)
    finally:
        server.close()
        await server.wait_closed()


def test_grpcio_client_calls_a_server_on_the_codec():
    got = asyncio.run(_serve_grpcio_client())
    assert got[:100] == [bytes([i]) * (i * 40) for i in range(100)]
    assert got[100] == b"z" * (3 << 20)


class CodecClient(_Handler, asyncio.Protocol):
    """One unary call at a time on the codec's client role."""

    def __init__(self) -> None:
        self.done: dict[int, asyncio.Future] = {}
        self.bodies: dict[int, bytearray] = {}
        self.heads: dict[int, tuple] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.conn = Connection(self, client=True)
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.conn.receive(data)
        self.transport.write(self.conn.data_to_send())

    def call(self, path: bytes, message: bytes) -> asyncio.Future:
        sid = self.conn.next_stream_id()
        body = len(message).to_bytes(5, "big") + message  # flag 0, then the length
        self.conn.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                                     (b":authority", b"test"), (b"content-type", b"application/grpc"),
                                     (b"te", b"trailers")])
        self.conn.send_data(sid, body, end_stream=True)
        self.transport.write(self.conn.data_to_send())
        self.bodies[sid] = bytearray()
        self.done[sid] = asyncio.get_running_loop().create_future()
        return self.done[sid]

    def on_response(self, sid, headers, end_stream):
        self.heads[sid] = headers
        if end_stream:
            self.done.pop(sid).set_result((headers, b""))

    def on_data(self, sid, data, flow_len, end_stream):
        self.bodies[sid] += data
        self.conn.acknowledge(sid, flow_len)

    def on_trailers(self, sid, headers):
        self.done.pop(sid).set_result((headers, bytes(self.bodies.pop(sid))[5:]))

    def on_reset(self, sid, code):
        self.done.pop(sid).set_exception(AssertionError(f"stream {sid} reset with {code}"))


async def _echo(request: bytes, context) -> bytes:
    return request


def test_codec_client_calls_a_grpc_aio_server():
    asyncio.run(_call_grpc_aio_server())


async def _call_grpc_aio_server() -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "echo.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_connection(CodecClient, "127.0.0.1", port)
        for i in range(20):
            trailers, body = await asyncio.wait_for(client.call(b"/echo.Echo/Echo", b"m" * (i * 100)), DEADLINE)
            assert body == b"m" * (i * 100) and (b"grpc-status", b"0") in trailers
        trailers, _ = await asyncio.wait_for(client.call(b"/echo.Echo/Missing", b""), DEADLINE)
        assert (b"grpc-status", b"12") in trailers  # UNIMPLEMENTED, trailers-only
        transport.close()
    finally:
        await server.stop(None)

