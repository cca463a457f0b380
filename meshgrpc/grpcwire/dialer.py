"""Dialer: how to reach gRPC servers (TLS or not, credentials, keepalive, limits),
and the one place connections are made (Channel, channel.py).

A Dialer is shared by everything that calls one kind of server: the discovery
client holds one for the control plane, the health checker one for the
endpoints. It is the keeper of the keepalive interval across reconnects:
when a server answers our pings with GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
the interval doubles for every later connection (grpc-core does the same,
chttp2_transport.cc), so a client and a server that disagree settle rather than
reconnect forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import AsyncIterator, Callable

from google.protobuf.message import Message

from meshgrpc.addresses import split_address
from meshgrpc.codec import DEFAULT_LIMITS, Limits
from meshgrpc.control_channel import Keepalive
from meshgrpc.grpcwire.call import Call
from meshgrpc.grpcwire.channel import Channel
from meshgrpc.grpcwire.metadata import Metadata
from meshgrpc.grpcwire.status import UNAVAILABLE, RpcError

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 4 << 20   # gRPC's default receive limit
MAX_KEEPALIVE_INTERVAL = 2 * 3600.0   # doubling stops here (grpc-core's server default)


class Dialer:
    """`ssl_context`: TLS (ALPN h2 is set on it), with the client certificate
    loaded into it if the server asks for one; or a function returning the
    context for each new connection (a client certificate that is renewed: each
    connection presents the one current when it is made); None for plaintext.
    `server_hostname`: the name the server's certificate must carry (default:
    the target's host). `metadata`: called for each call, returns its custom
    metadata, e.g. `lambda: [("authorization", "Bearer " + token())]`, so a
    renewed credential is used from the next call on. `keepalive`: pings on
    idle connections (None: none). `max_message_bytes`: the largest message sent
    or received. `connect_timeout`: TCP, TLS and the server's SETTINGS together.
    `io_timeout`: the longest a send waits for the server's flow control."""

    def __init__(self, *, ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
                 server_hostname: str | None = None, metadata: Callable[[], Metadata] | None = None,
                 keepalive: Keepalive | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 connect_timeout: float = 10.0, io_timeout: float = 30.0, limits: Limits = DEFAULT_LIMITS) -> None:
        self.ssl_context, self.server_hostname = ssl_context, server_hostname
        self.metadata = metadata
        self.keepalive = keepalive
        self.max_message_bytes = max_message_bytes
        self.connect_timeout, self.io_timeout = connect_timeout, io_timeout
        self.limits = limits

    async def connect(self, target: str, timeout: float | None = None) -> Channel:
        """A channel to `target` ("host:port") whose server has sent its SETTINGS;
        RpcError UNAVAILABLE if that takes more than `timeout` (default
        connect_timeout) or fails."""
        host, port = split_address(target)
        timeout = self.connect_timeout if timeout is None else timeout
        channel = Channel(target, authority=target, tls=self.ssl_context is not None, limits=self.limits,
                          keepalive=self.keepalive, max_message_bytes=self.max_message_bytes,
                          io_timeout=self.io_timeout, on_too_many_pings=self._too_many_pings)
        try:
            async with asyncio.timeout(timeout):
                await self._open(channel, host, port)
                await channel.wait_ready()
        except BaseException as e:
            await channel.close()
            raise _connect_error(target, e, timeout) from None
        return channel

    async def _open(self, channel: Channel, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        if self.ssl_context is None:
            await loop.create_connection(lambda: channel, host, port)
            return
        context = self.ssl_context() if callable(self.ssl_context) else self.ssl_context
        context.set_alpn_protocols(["h2"])
        transport, _ = await loop.create_connection(lambda: channel, host, port, ssl=context,
                                                    server_hostname=self.server_hostname or host)
        alpn = transport.get_extra_info("ssl_object").selected_alpn_protocol()
        if alpn != "h2":   # gRPC requires HTTP/2 negotiated by ALPN over TLS (RFC 9113 §3.2)
            raise RpcError(UNAVAILABLE, f"the server negotiated {alpn or 'no protocol'} over ALPN, not h2")

    def call_metadata(self) -> list:
        return list(self.metadata()) if self.metadata is not None else []

    @contextlib.asynccontextmanager
    async def open_stream(self, target: str, method: str, response_class: type[Message], *,
                          timeout: float | None = None) -> AsyncIterator[Call]:
        """A call on a connection of its own, closed when the block ends (a
        long-lived stream: discovery, load reports)."""
        channel = await self.connect(target)
        try:
            yield channel.open_call(method, response_class, timeout=timeout, metadata=self.call_metadata())
        finally:
            await channel.close()

    async def unary(self, target: str, method: str, request: Message, response_class: type[Message], *,
                    timeout: float) -> Message:
        """One unary call on a connection of its own, `timeout` covering the
        connection and the call (an occasional call: a certificate request)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        channel = await self.connect(target, timeout=timeout)
        try:
            return await channel.unary(method, request, response_class, timeout=max(0.0, deadline - loop.time()),
                                       metadata=self.call_metadata())
        finally:
            await channel.close()

    def _too_many_pings(self, channel: Channel) -> None:
        if self.keepalive is None:
            return
        interval = min(2 * self.keepalive.interval, MAX_KEEPALIVE_INTERVAL)
        self.keepalive = dataclasses.replace(self.keepalive, interval=interval)
        log.warning("%s answered our keepalive pings with too_many_pings: pinging every %gs from now on",
                    channel.target, interval)

    def __repr__(self) -> str:
        return (f"<Dialer tls={self.ssl_context is not None} keepalive={self.keepalive} "
                f"max_message_bytes={self.max_message_bytes}>")


def _connect_error(target: str, error: BaseException, timeout: float) -> BaseException:
    if isinstance(error, RpcError):
        return RpcError(error.code, f"{target}: {error.message}") if target not in error.message else error
    if isinstance(error, TimeoutError):
        return RpcError(UNAVAILABLE, f"cannot connect to {target}: no HTTP/2 connection within {timeout:g}s")
    if isinstance(error, OSError):   # refused, unreachable, TLS handshake or certificate failures
        return RpcError(UNAVAILABLE, f"cannot connect to {target}: {error}")
    return error   # cancellation and the like go on as they are
