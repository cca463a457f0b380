"""Accepting downstream HTTP/2 (h2c, prior knowledge) connections: their lifecycle
and the drain on shutdown.

`serve(relay, host, port)` binds and returns a started Listener. `drain(timeout)`
stops accepting, sends GOAWAY (last_stream_id = the highest stream seen, so streams
in flight finish and any that raced the GOAWAY are refused with REFUSED_STREAM,
which gRPC clients retry transparently), waits up to `timeout` for the streams in
flight, then closes what is left.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated, DataReceived, RemoteSettingsChanged, RequestReceived,
    StreamEnded, StreamReset, TrailersReceived, WindowUpdated,
)

from meshgrpc.proxy.h2conf import DEFAULT_TUNING, Tuning, new_connection
from meshgrpc.proxy.h2side import H2Side

log = logging.getLogger(__name__)


class DownstreamConnection(H2Side):
    """Server side of one client connection."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(new_connection(False, listener.tuning), listener.relay.flusher)
        self.listener = listener
        self.relay = listener.relay
        self.goaway_last: int | None = None  # set once we sent GOAWAY
        self.peer_gone = False  # the client sent GOAWAY

    def __repr__(self) -> str:
        return f"<DownstreamConnection calls={len(self.calls)} goaway={self.goaway_last} closed={self.closed}>"

    def connection_made(self, transport) -> None:
        self.listener.conns.add(self)
        super().connection_made(transport)

    # -- events ---------------------------------------------------------------------
    def on_request(self, ev) -> None:
        if self.goaway_last is not None and ev.stream_id > self.goaway_last:
            self.reset(ev.stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self.relay.start_call(self, ev)

    def on_data(self, ev) -> None:
        call = self.calls.get(ev.stream_id)
        if call is None:
            self.on_data_for_dropped_stream(ev)
        else:
            call.on_request_data(ev)

    def on_ended(self, ev) -> None:
        call = self.calls.get(ev.stream_id)
        if call is not None:
            call.on_request_end()

    def on_trailers(self, ev) -> None:
        call = self.calls.get(ev.stream_id)
        if call is not None:
            call.on_request_trailers(ev.headers)

    def on_reset(self, ev) -> None:
        call = self.calls.get(ev.stream_id)
        if call is not None:
            call.on_downstream_reset(ev.error_code)

    def on_goaway(self, ev) -> None:
        self.peer_gone = True
        if ev.error_code != ErrorCodes.NO_ERROR:
            self.transport.close()
        else:
            self.call_done()

    handlers = {
        RequestReceived: on_request, DataReceived: on_data, StreamEnded: on_ended,
        TrailersReceived: on_trailers, StreamReset: on_reset,
        WindowUpdated: H2Side.on_window_updated, RemoteSettingsChanged: H2Side.on_settings_changed,
        ConnectionTerminated: on_goaway,
    }

    # -- lifecycle ------------------------------------------------------------------
    def call_done(self) -> None:
        """A call on this connection ended: close once draining and idle."""
        if not self.calls and (self.goaway_last is not None or self.peer_gone) and not self.closed:
            self.touch()
            self.flusher.flush()
            self.transport.close()

    def send_goaway(self) -> None:
        if self.closed or self.goaway_last is not None:
            return
        self.goaway_last = self.h2.highest_inbound_stream_id
        self.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=self.goaway_last)
        self.touch()
        self.flusher.flush()
        self.call_done()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.blocked.clear()
        for call in list(self.calls.values()):
            call.on_downstream_lost()
        self.listener.connection_closed(self)
        self.flusher.flush()


class Listener:
    """The proxy's downstream socket and the connections accepted on it."""

    def __init__(self, relay, host: str, port: int, *, tuning: Tuning = DEFAULT_TUNING,
                 reuse_port: bool = False, backlog: int = 1024) -> None:
        self.relay = relay
        self.host, self.port = host, port
        self.tuning = tuning
        self.reuse_port = reuse_port
        self.backlog = backlog
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[DownstreamConnection] = set()
        self.draining = False
        self._idle = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Listener {self.host}:{self.port} conns={len(self.conns)} draining={self.draining}>"

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.relay.loop = loop
        self.server = await loop.create_server(
            lambda: DownstreamConnection(self), self.host, self.port,
            reuse_port=self.reuse_port or None, backlog=self.backlog, family=socket.AF_INET
            if ":" not in self.host else socket.AF_INET6)
        self.host, self.port = self.server.sockets[0].getsockname()[:2]
        log.info("proxy listening on %s:%d", self.host, self.port)
        return self.host, self.port

    def in_flight(self) -> int:
        return sum(len(c.calls) for c in self.conns)

    def connection_closed(self, conn: DownstreamConnection) -> None:
        self.conns.discard(conn)
        if self.draining and not self.conns:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """GOAWAY to every client, wait up to `timeout` s for streams in flight to
        finish; True if all finished in time. Closes every connection either way."""
        self.draining = True
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            conn.send_goaway()
        if self.conns:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("drain: %d call(s) still in flight after %.1fs", self.in_flight(), timeout)
        drained = not self.conns
        await self.close()
        return drained

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        if self.server is not None:
            await self.server.wait_closed()


async def serve(relay, host: str, port: int, *, reuse_port: bool = False,
                tuning: Tuning = DEFAULT_TUNING) -> Listener:
    """Bind a Listener for `relay` (several worker processes may share the port
    with reuse_port=True) and log `proxy listening on HOST:PORT`."""
    listener = Listener(relay, host, port, tuning=tuning, reuse_port=reuse_port)
    await listener.start()
    return listener
