"""Test harness for the relay: a real grpcio backend (generic echo-style handlers),
the relay running on a uvloop event loop in a thread, and helpers to build the
route table and cluster set from protos with the routing helper's builders."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import grpc
import uvloop

from meshapi.v1 import resources_pb2
from tests.support.specs import cluster_set_of
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.proxy.listener import serve
from meshgrpc.proxy.relay import Relay
from meshgrpc.proxy.state import ProxyState, StateHolder
from meshgrpc.proxy.upstream import UpstreamPools


def route_config(prefix_to_cluster: dict[str, str], timeout_s: float | None = None,
                 name: str = "default") -> resources_pb2.RouteConfig:
    rc = resources_pb2.RouteConfig(name=name)
    vh = rc.virtual_hosts.add(name="all", domains=["*"])
    for prefix, cluster in prefix_to_cluster.items():
        r = vh.routes.add(name=f"to-{cluster}")
        r.match.prefix = prefix
        r.route.cluster = cluster
        if timeout_s is not None:
            r.route.timeout.FromNanoseconds(int(timeout_s * 1e9))
    return rc


def cluster_set(endpoints: dict[str, list[str]]) -> ClusterSet:
    clusters = {n: resources_pb2.Cluster(name=n, lb_policy=resources_pb2.Cluster.ROUND_ROBIN)
                for n in endpoints}
    sets = {n: resources_pb2.EndpointSet(cluster=n, endpoints=[resources_pb2.Endpoint(address=a)
                                                              for a in addrs])
            for n, addrs in endpoints.items()}
    return cluster_set_of(clusters, sets)


class Outcomes:
    """Observer collecting per-call outcomes (called on the relay's loop)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.events: list[tuple] = []

    def on_call_end(self, route, cluster, endpoint, grpc_status, http_status, latency) -> None:
        self.calls.append((route, cluster, endpoint, grpc_status, http_status, latency))

    def on_event(self, event, name, detail) -> None:
        self.events.append((event, name, detail))


class RelayThread:
    """The relay on its own uvloop loop in a daemon thread."""

    def __init__(self, state: ProxyState, **pool_options) -> None:
        self.loop = uvloop.new_event_loop()
        self.holder = StateHolder(state)
        self.outcomes = Outcomes()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pools = self.listener = self.relay = None

        async def start():
            self.pools = UpstreamPools(**pool_options)
            self.pools.sync(state.clusters.addresses())
            self.relay = Relay(self.holder, self.pools, observer=self.outcomes)
            self.listener = await serve(self.relay, "127.0.0.1", 0)
        self.run(start())
        self.address = f"127.0.0.1:{self.listener.port}"

    def run(self, coro, timeout: float = 15.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        async def go():
            return fn(*args)
        return self.run(go())

    def stop(self) -> None:
        async def stop():
            await self.listener.close()
            await self.pools.close()
        try:
            self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _ident(b):
    return b


class Backend:
    """A real grpcio server with generic handlers on 127.0.0.1:0.

    /echo.Echo/Unary       echoes the request; metadata `x-status-bin` (UTF-8 "5:msg")
                           makes it abort with that code and message; `x-sleep` (s) sleeps.
    /echo.Echo/Server      streams back `n` copies (n = first byte of request) of the request.
    /echo.Echo/Client      concatenates all requests.
    /echo.Echo/Bidi        echoes each request as it arrives (ping-pong).
    /echo.Echo/Hang        never answers until cancelled (records the cancellation).
    Initial metadata with `x-echo-*` keys is sent back as initial and trailing metadata.
    """

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(16),
                                  options=[("grpc.max_receive_message_length", 64 << 20),
                                           ("grpc.max_send_message_length", 64 << 20)])
        h = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary, _ident, _ident),
            "Server": grpc.unary_stream_rpc_method_handler(self.server_stream, _ident, _ident),
            "Client": grpc.stream_unary_rpc_method_handler(self.client_stream, _ident, _ident),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, _ident, _ident),
            "Hang": grpc.unary_unary_rpc_method_handler(self.hang, _ident, _ident),
        }
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo.Echo", h)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self, grace=None):
        self.server.stop(grace).wait(5)

    @staticmethod
    def _echo_md(context):
        md = tuple((k, v) for k, v in context.invocation_metadata() if k.startswith("x-echo-"))
        if md:
            context.send_initial_metadata(md)
            context.set_trailing_metadata(md)

    def unary(self, request, context):
        md = dict(context.invocation_metadata())
        self._echo_md(context)
        if "x-sleep" in md:
            time.sleep(float(md["x-sleep"]))
        if "x-status-bin" in md:
            code, _, msg = md["x-status-bin"].decode().partition(":")
            context.abort(grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == int(code)).value), msg)
        if "x-timeout-seen" in md:
            context.set_trailing_metadata((("x-remaining", repr(context.time_remaining())),))
        return request

    def server_stream(self, request, context):
        n = request[0] if request else 0
        for _ in range(n):
            yield request

    def client_stream(self, requests, context):
        return b"".join(requests)

    def bidi(self, requests, context):
        for r in requests:
            yield r

    def hang(self, request, context):
        while context.is_active():
            time.sleep(0.01)
        self.cancelled.set()
        return b""


class PlainH2Backend(asyncio.Protocol):
    """A minimal non-gRPC HTTP/2 server (h2 over asyncio): answers every request
    with 200, content-type text/plain and the request body reversed."""

    def __init__(self) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.bodies: dict[int, bytearray] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def data_received(self, data) -> None:
        from h2 import events as ev
        for e in self.h2.receive_data(data):
            if isinstance(e, ev.RequestReceived):
                self.bodies[e.stream_id] = bytearray()
            elif isinstance(e, ev.DataReceived):
                self.bodies[e.stream_id] += e.data
                self.h2.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, ev.StreamEnded):
                body = bytes(self.bodies.pop(e.stream_id))[::-1] or b"empty"
                self.h2.send_headers(e.stream_id, [(b":status", b"200"), (b"content-type", b"text/plain"),
                                                   (b"content-length", b"%d" % len(body))])
                self.h2.send_data(e.stream_id, body, end_stream=True)
        self.transport.write(self.h2.data_to_send())


async def start_plain_backend() -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.get_running_loop().create_server(PlainH2Backend, "127.0.0.1", 0)
    return server, "127.0.0.1:%d" % server.sockets[0].getsockname()[1]


def h2_request(address: str, method: bytes, path: bytes, body: bytes = b"",
               content_type: bytes = b"text/plain", timeout: float = 5.0):
    """One plain HTTP/2 request over a blocking socket: (headers, body)."""
    import socket
    from h2 import events as ev
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(b":method", method), (b":scheme", b"http"), (b":path", path),
                            (b":authority", address.encode()), (b"content-type", content_type)],
                      end_stream=not body)
    if body:
        conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    headers, data = None, bytearray()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed before the response ended")
            for e in conn.receive_data(chunk):
                if isinstance(e, ev.ResponseReceived):
                    headers = dict(e.headers)
                elif isinstance(e, ev.DataReceived):
                    data += e.data
                    conn.acknowledge_received_data(e.flow_controlled_length, sid)
                elif isinstance(e, ev.StreamEnded):
                    return headers, bytes(data)
                elif isinstance(e, ev.StreamReset):
                    raise AssertionError(f"stream reset: {e.error_code!r}")
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def main() -> None:
    """`python -m tests.integration.relay_harness`: a Backend process for kill tests."""
    import logging
    import signal
    logging.basicConfig(level="INFO")
    b = Backend()
    logging.getLogger("backend").info("backend listening on %s", b.address)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    main()
