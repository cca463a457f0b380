"""A gRPC server on meshgrpc's own HTTP/2 codec: what the control plane serves on,
so that a subscribed proxy's stream costs the control plane a codec stream, a
call and its task (about 3 KiB) instead of a grpc.aio call (23 KiB, most of it
grpc-core's; bench/stream_floor.py).

It takes what grpc.aio.Server takes, so servicers are written once:

    server = Server(options=ServerOptions(min_ping_interval=10), interceptors=[...])
    servicer_pb2_grpc.add_FooServicer_to_server(servicer, server)
    port = await server.bind("127.0.0.1:0", ssl_context=None)   # or a TLS context
    await server.start(); ...; await server.stop(grace=2.0)

Handlers (grpc.*_rpc_method_handler, generic handlers) and interceptors
(grpc.aio.ServerInterceptor) are grpcio's; each call's context is a ServerCall
(server_call.py). What a connection does by itself, as grpc-core's server does:
- TLS (an ssl.SSLContext with ALPN h2) under the codec; a client certificate
  the handshake verified is in every call's auth_context()["x509_pem_cert"];
- gRPC's ping policy (codec Limits.min_ping_interval, max_ping_strikes: GOAWAY
  ENHANCE_YOUR_CALM "too_many_pings"), the codec's flood limits and its
  MAX_CONCURRENT_STREAMS;
- message size limits both ways, grpc-timeout deadlines, a request that is not
  gRPC answered with an HTTP status;
- a connection that has not finished TLS and sent HTTP/2's preface and SETTINGS
  within `preface_timeout` is closed;
- a peer that stops reading makes its calls' writes wait (the transport's
  high-water mark), and a write that cannot go on for `io_timeout` ends its call;
- stop(grace): GOAWAY, calls have `grace` seconds to finish, the rest end
  UNAVAILABLE, connections close.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import logging
import ssl
import sys
import types
from collections.abc import Callable, Mapping

import grpc

from meshgrpc.addresses import split_address
from meshgrpc.codec import Connection, ConnectionFailed, Counters, Limits
from meshgrpc.codec.errors import NO_ERROR
from meshgrpc.grpcwire import status as st
from meshgrpc.grpcwire.link import Link
from meshgrpc.grpcwire.server_call import ServerCall
from meshgrpc.proxy.grpc_status import parse_timeout, trailers_only
from meshgrpc.proxy.h2side import WRITE_HIGH, WRITE_LOW

log = logging.getLogger(__name__)

# Request headers that are HTTP/2's or gRPC's own, not the caller's metadata.
_NOT_METADATA = frozenset({b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding"})
_PLAINTEXT: Mapping[str, list[bytes]] = types.MappingProxyType({})   # every plaintext connection's
_HandlerCallDetails = collections.namedtuple("_HandlerCallDetails", ("method", "invocation_metadata"))


class HandlerCallDetails(_HandlerCallDetails, grpc.HandlerCallDetails):
    """What an interceptor is told of a call (grpc.aio's own is private)."""


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """`min_ping_interval`/`max_ping_strikes`: gRPC's ping policy (control_channel.py);
    `max_message_bytes` both ways; `max_concurrent_streams` per connection;
    `io_timeout`: the longest one response write waits for the client's window;
    `preface_timeout`: how long a new connection may take to finish its TLS
    handshake and send HTTP/2's preface and SETTINGS before it is closed."""

    min_ping_interval: float = 300.0   # grpc-core's default (5 minutes)
    max_ping_strikes: int = 2
    max_message_bytes: int = 4 << 20   # grpc's default receive limit
    max_concurrent_streams: int = 1000
    io_timeout: float = 30.0
    preface_timeout: float = 10.0

    def limits(self) -> Limits:
        return Limits(max_concurrent_streams=self.max_concurrent_streams, min_ping_interval=self.min_ping_interval,
                      max_ping_strikes=self.max_ping_strikes)


class Server:
    """Serves the handlers added to it on every address bound (module doc)."""

    def __init__(self, options: ServerOptions = ServerOptions(), interceptors=()) -> None:
        self.options = options
        self.limits = options.limits()
        self.counters = Counters()   # how often each HTTP/2 limit acted, on every connection
        self._generic: list = []
        self._handler_of = self._lookup   # the interceptors, outermost first, then the lookup
        for interceptor in reversed(tuple(interceptors)):
            self._handler_of = _chained(interceptor, self._handler_of)
        self._listeners: list[asyncio.Server] = []
        self.connections: set[ServerConnection] = set()
        self.stopping = False

    # -- what grpc's generated add_*_to_server functions call ----------------------------
    def add_generic_rpc_handlers(self, handlers) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers) -> None:
        pass   # the generic handler added alongside serves the same methods

    # -- lifecycle ------------------------------------------------------------------------
    async def bind(self, address: str, ssl_context: ssl.SSLContext | None = None,
                   before_handshake: Callable[[], None] | None = None) -> int:
        """Listens on "host:port" (port 0: any free one), serving from start();
        returns the port. `before_handshake` is called for each connection
        accepted, before its TLS handshake (where a certificate due for renewal
        is renewed). Raises ValueError for a bad address, OSError when it cannot
        be bound."""
        host, port = split_address(address, listen=True)
        loop = asyncio.get_running_loop()
        tls = ssl_context is not None

        def accepted() -> ServerConnection:
            if before_handshake is not None:
                before_handshake()
            return ServerConnection(self, tls=tls)
        listener = await loop.create_server(accepted, host, port,
                                            ssl=ssl_context, start_serving=False, backlog=4096,
                                            ssl_handshake_timeout=self.options.preface_timeout
                                            if ssl_context is not None else None)
        self._listeners.append(listener)
        return listener.sockets[0].getsockname()[1]

    async def start(self) -> None:
        for listener in self._listeners:
            await listener.start_serving()

    async def stop(self, grace: float | None) -> None:
        """No new connections or calls; calls have `grace` seconds to end, then the
        rest end UNAVAILABLE and every connection closes."""
        self.stopping = True
        for listener in self._listeners:
            listener.close()
        for connection in list(self.connections):
            connection.go_away()
        if grace:
            try:
                async with asyncio.timeout(grace):
                    while any(c.calls for c in self.connections):
                        await asyncio.sleep(0.05)
            except TimeoutError:
                pass
        tasks = []
        for connection in list(self.connections):
            tasks += connection.end_calls("the server is shutting down")
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for connection in list(self.connections):
            connection.close()
        for listener in self._listeners:
            await listener.wait_closed()

    # -- calls ----------------------------------------------------------------------------
    async def resolve(self, method: str, metadata: tuple):
        """The handler of `method` after the interceptors, or None (UNIMPLEMENTED)."""
        return await self._handler_of(HandlerCallDetails(method, metadata))

    async def _lookup(self, details):
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None


def _chained(interceptor, continuation):
    async def call(details):
        return await interceptor.intercept_service(continuation, details)
    return call


class ServerConnection(Link):
    """One client's HTTP/2 connection: the codec's handler (server role) and the
    transport's protocol; `calls` by stream id."""

    def __init__(self, server: Server, *, tls: bool) -> None:
        self.server = server
        self.max_message_bytes = server.options.max_message_bytes
        super().__init__(Connection(self, client=False, limits=server.limits, counters=server.counters), tls=tls)
        self.peer = ""
        self.auth_context: Mapping[str, list[bytes]] = _PLAINTEXT
        self._lost = False
        self._preface_timer: asyncio.TimerHandle | None = None

    # -- used by calls ----------------------------------------------------------------------
    def send_headers(self, stream_id: int, headers, end_stream: bool) -> None:
        if not self._lost:
            self.conn.send_headers(stream_id, headers, end_stream)
            self.flush()

    def down(self) -> bool:
        return self._lost

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.peer = _peer_name(transport.get_extra_info("peername"))
        self.auth_context = _auth_context(transport)
        self.server.connections.add(self)
        self._preface_timer = asyncio.get_running_loop().call_later(self.server.options.preface_timeout,
                                                                    self._check_preface)
        if self.server.stopping:
            self.conn.goaway(NO_ERROR)
        self.flush()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._preface_timer is not None and self.conn.peer_settings_received():
            self._cancel_preface_timer()   # not held for the rest of the preface timeout

    def protocol_failed(self, error: ConnectionFailed) -> None:
        log.info("connection from %s ended: HTTP/2 error (code %d): %s", self.peer, error.code, error)
        self._abort()

    def _cancel_preface_timer(self) -> None:
        if self._preface_timer is not None:
            self._preface_timer.cancel()
            self._preface_timer = None

    def _check_preface(self) -> None:
        self._preface_timer = None
        if not self.conn.peer_settings_received():
            log.info("connection from %s closed: no HTTP/2 preface and SETTINGS within %gs", self.peer,
                     self.server.options.preface_timeout)
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_preface_timer()
        self._lost = True
        self.server.connections.discard(self)
        self.end_calls("the connection was lost")
        self.writable.set()
        self.conn.detach()

    # -- codec handler (server role) ------------------------------------------------------
    def on_request(self, stream_id, headers, end_stream) -> None:
        fields = [(bytes(n), bytes(v)) for n, v in headers]
        pseudo = {n: v for n, v in fields if n.startswith(b":")}
        problem = _request_problem(pseudo, fields)
        if problem is not None:
            self.conn.send_headers(stream_id, problem, True)
            return
        timeout = None
        for name, value in fields:
            if name == b"grpc-timeout":
                timeout = parse_timeout(value)
        options = self.server.options
        method = sys.intern(pseudo[b":path"].decode("ascii", "replace"))   # one string per method, not per call
        call = ServerCall(self, stream_id, method, _metadata(fields),
                          timeout=timeout, max_message_bytes=options.max_message_bytes,
                          queue_limit=self.server.limits.stream_window, io_timeout=options.io_timeout)
        self.calls[stream_id] = call
        if end_stream:
            call.on_request_end()
        call.start(self.server.resolve)

    def on_response(self, stream_id, headers, end_stream) -> None:   # client role only
        pass

    def on_trailers(self, stream_id, headers) -> None:
        if (call := self.calls.get(stream_id)) is not None:
            call.on_request_end()

    def on_settings(self) -> None:
        self._wake_all()   # INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE may have changed

    def on_goaway(self, code, last_stream_id, debug) -> None:
        pass   # the client opens no more streams; its open calls go on

    # -- the server's side ----------------------------------------------------------------
    def go_away(self) -> None:
        if not self._lost:
            self.conn.goaway(NO_ERROR)
            self.flush()

    def end_calls(self, why: str) -> list[asyncio.Task]:
        """Cancels every call (UNAVAILABLE where the stream can still say so); their tasks."""
        tasks = []
        for call in list(self.calls.values()):
            call.cancel(st.UNAVAILABLE, why)
            if call.task is not None:
                tasks.append(call.task)
        return tasks

    def close(self) -> None:
        if self.transport is None or self._lost:
            return
        self.flush()
        self.close_transport()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"<ServerConnection {self.peer} calls={len(self.calls)}>"


def _request_problem(pseudo: dict, fields: list) -> list | None:
    """A response refusing a request that is not a gRPC call, or None."""
    if pseudo.get(b":method") != b"POST" or b":path" not in pseudo:
        return [(b":status", b"405"), (b"content-type", b"text/plain")] + \
            trailers_only(st.INTERNAL, "a gRPC call is a POST with a :path")[2:]
    ctype = next((v for n, v in fields if n == b"content-type"), b"")
    if not ctype.startswith(b"application/grpc"):
        return [(b":status", b"415"), (b"content-type", b"text/plain")] + \
            trailers_only(st.INTERNAL, f"content-type {ctype.decode(errors='replace')!r} is not application/grpc")[2:]
    return None


def _metadata(fields: list) -> tuple:
    """The caller's custom metadata as grpc.aio gives it: text values as str,
    values of -bin keys base64-decoded to bytes."""
    out = []
    for name, value in fields:
        if name.startswith(b":") or name in _NOT_METADATA:
            continue
        key = name.decode("ascii", "replace")
        if key.endswith("-bin"):
            try:
                out.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
            except binascii.Error:
                continue   # not base64: dropped, as grpc-core drops it

        else:
            out.append((key, value.decode("latin-1")))
    return tuple(out)


def _peer_name(peername) -> str:
    """grpc's form of a peer address: ipv4:1.2.3.4:5 or ipv6:[::1]:5."""
    if not peername:
        return "unknown"
    host, port = peername[0], peername[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _auth_context(transport) -> Mapping[str, list[bytes]]:
    """What grpc's auth_context() holds that meshgrpc reads: the verified client certificate."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return _PLAINTEXT
    context = {"transport_security_type": [b"ssl"]}
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        context["x509_pem_cert"] = [ssl.DER_cert_to_PEM_cert(der).encode()]
    return context
