"""Channel: one HTTP/2 connection to a gRPC server, on meshgrpc's codec, carrying
any number of calls (call.py). A channel never reconnects: once its connection is
lost every call on it fails UNAVAILABLE and the caller dials a new one
(dialer.py), with whatever backoff it keeps.

What the connection does by itself:
- Keepalive (grpc doc/keepalive.md): after `keepalive.interval` seconds in which
  nothing was received it sends a PING, and drops the connection when no ACK
  comes within `keepalive.timeout`, so a server that vanished without closing the
  connection (host down, network cut) is noticed. The owner of the interval is
  the dialer, which doubles it when a server sends GOAWAY "too_many_pings", as
  grpc-core does.
- GOAWAY (RFC 9113 §6.8): no new calls; calls above the server's last stream id
  were never processed and fail UNAVAILABLE at once (safe to retry); the rest
  finish, then the connection is closed.
- Flow control through the codec: sends wait for window (call.py), received
  bytes are handed back as the calls take them.

Tasks: the keepalive loop is an OwnedTask; close() stops it and waits (bounded)
for the transport to close. Everything runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from google.protobuf.message import Message

from meshgrpc.codec import CannotOpenStream, Connection, ConnectionFailed, Limits
from meshgrpc.codec.errors import ENHANCE_YOUR_CALM, NO_ERROR
from meshgrpc.control_channel import Keepalive
from meshgrpc.grpcwire import status as st
from meshgrpc.grpcwire.call import Call
from meshgrpc.grpcwire.link import Link
from meshgrpc.grpcwire.metadata import Metadata, request_headers
from meshgrpc.grpcwire.status import RpcError, Status
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0   # longest close() waits for the transport to close before aborting it
TOO_MANY_PINGS = b"too_many_pings"


class Channel(Link):
    """Made (and connected) by Dialer.connect(). `target` is "host:port";
    `authority` goes in :authority; `tls` says whether the transport is TLS;
    `on_too_many_pings(channel)` is told of a GOAWAY "too_many_pings"."""

    def __init__(self, target: str, *, authority: str, tls: bool, limits: Limits,
                 keepalive: Keepalive | None, max_message_bytes: int, io_timeout: float,
                 on_too_many_pings: Callable[[Channel], None] | None = None) -> None:
        self.target, self.authority = target, authority
        self.keepalive = keepalive
        self._on_too_many_pings = on_too_many_pings
        self.max_message_bytes, self.io_timeout = max_message_bytes, io_timeout
        super().__init__(Connection(self, client=True, limits=limits), tls=tls)
        self.queue_limit = limits.stream_window
        self.goaway: tuple[int, int, bytes] | None = None   # (code, last stream id, debug) received
        self.too_many_pings = False
        self.lost: Status | None = None     # why the connection ended, once it has
        self._ready = asyncio.get_running_loop().create_future()  # the server's first SETTINGS
        self._closed = asyncio.Event()      # connection_lost() was called
        self._last_read = asyncio.get_running_loop().time()
        self._ping_acked = asyncio.Event()
        self._ping_payload = b""
        self.pings_acked = 0   # keepalive pings the server answered (observable)
        self._keepalive_task = OwnedTask(f"grpcwire-keepalive {target}", self._keepalive_loop)

    # -- the caller's side ----------------------------------------------------------
    def open_call(self, method: str, response_class: type[Message] | None, *, timeout: float | None = None,
                  metadata: Metadata = ()) -> Call:
        """Starts a call (sends its headers); raises RpcError UNAVAILABLE when the
        connection cannot take one (lost, going away, or at the server's
        MAX_CONCURRENT_STREAMS), ValueError for bad metadata."""
        if self.lost is not None:
            raise self.lost.error()
        if self.goaway is not None:
            raise RpcError(st.UNAVAILABLE, f"{self.target}: the server sent GOAWAY; no new calls on this connection")
        headers = request_headers(method, self.authority, tls=self.tls, timeout=timeout, metadata=metadata)
        stream_id = self.conn.next_stream_id()
        try:
            self.conn.send_headers(stream_id, headers)
        except CannotOpenStream as e:
            raise RpcError(st.UNAVAILABLE, f"{self.target}: cannot open a stream: {e}") from None
        call = Call(self, stream_id, method, response_class, timeout=timeout,
                    max_message_bytes=self.max_message_bytes, io_timeout=self.io_timeout,
                    queue_limit=self.queue_limit)
        self.calls[stream_id] = call
        self.flush()
        return call

    async def unary(self, method: str, request: Message, response_class: type[Message], *,
                    timeout: float | None = None, metadata: Metadata = ()) -> Message:
        """One unary call: the response, or RpcError with the status."""
        call = self.open_call(method, response_class, timeout=timeout, metadata=metadata)
        try:
            await call.send(request, end=True)
            response = await call.recv()
            if response is None:
                raise RpcError(st.INTERNAL, f"{method}: the server sent no response message")
            if await call.recv() is not None:
                raise RpcError(st.INTERNAL, f"{method}: the server sent more than one response message")
            return response
        finally:
            call.cancel()

    @property
    def closed(self) -> bool:
        """True once the connection is lost or closed: make a new channel."""
        return self.lost is not None

    async def close(self) -> None:
        """Cancels every call, sends GOAWAY, closes the connection and waits for it."""
        self._lose(Status(st.CANCELLED, f"{self.target}: the channel was closed"))
        await self._keepalive_task.stop()
        if self.transport is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._closed.wait()
        except TimeoutError:
            self.transport.abort()

    # -- used by calls ----------------------------------------------------------------
    def down(self) -> bool:
        return self.lost is not None

    def release(self, call: Call, reset: int | None, owed: int) -> None:
        super().release(call, reset, owed)
        if self.lost is None and self.goaway is not None and not self.calls:
            self._lose(self._gone_away())   # nothing left to finish

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.flush()
        if self.keepalive is not None:
            self._keepalive_task.start()

    def data_received(self, data: bytes) -> None:
        self._last_read = asyncio.get_running_loop().time()
        super().data_received(data)

    def protocol_failed(self, error: ConnectionFailed) -> None:
        self._abort(Status(st.UNAVAILABLE, f"{self.target}: HTTP/2 connection error: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection lost: {exc}" if exc is not None else "connection closed by the server"
        if self.goaway is not None:
            code, _, debug = self.goaway
            reason += f" after GOAWAY {st.h2_name(code)} {debug.decode(errors='replace')!r}"
        self._lose(Status(st.UNAVAILABLE, f"{self.target}: {reason}"))
        self._closed.set()

    # -- codec handler (client role) --------------------------------------------------
    def on_request(self, stream_id, headers, end_stream) -> None:   # server role only
        pass

    def on_response(self, stream_id, headers, end_stream) -> None:
        if (call := self.calls.get(stream_id)) is not None:
            call.on_response(headers, end_stream)

    def on_trailers(self, stream_id, headers) -> None:
        if (call := self.calls.get(stream_id)) is not None:
            call.on_trailers(headers)

    def on_settings(self) -> None:
        if not self._ready.done():
            self._ready.set_result(None)
        self._wake_all()   # INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE may have changed

    def on_goaway(self, code, last_stream_id, debug) -> None:
        self.goaway = (code, last_stream_id, bytes(debug))
        if code != NO_ERROR:
            log.warning("%s: GOAWAY with error code %s from the server, debug data %r",
                        self.target, st.h2_name(code), bytes(debug).decode(errors="replace"))
        if code == ENHANCE_YOUR_CALM and bytes(debug) == TOO_MANY_PINGS and not self.too_many_pings:
            self.too_many_pings = True
            if self._on_too_many_pings is not None:
                self._on_too_many_pings(self)
        refused = Status(st.UNAVAILABLE, f"{self.target}: not processed by the server, which sent GOAWAY "
                                         f"{st.h2_name(code)}")
        for stream_id in [s for s in self.calls if s > last_stream_id]:
            self.calls[stream_id].fail(refused)
        if not self.calls:
            self._lose(self._gone_away())

    def on_ping_ack(self, payload) -> None:
        if bytes(payload) == self._ping_payload:
            self.pings_acked += 1
            self._ping_acked.set()

    # -- connection state -------------------------------------------------------------
    async def wait_ready(self) -> None:
        """Until the server's SETTINGS arrived (it speaks HTTP/2); raises the
        connection's error if it was lost first."""
        await self._ready

    def _gone_away(self) -> Status:
        code, _, debug = self.goaway
        return Status(st.UNAVAILABLE, f"{self.target}: the server sent GOAWAY {st.h2_name(code)} "
                                      f"{debug.decode(errors='replace')!r}")

    def _lose(self, status: Status) -> None:
        """The connection cannot carry calls any more: each one fails with `status`."""
        if self.lost is not None:
            return
        self.lost = status
        if not self._ready.done():
            self._ready.set_exception(status.error())
            self._ready.exception()   # retrieved: connect() may have given up waiting already
        for call in list(self.calls.values()):
            call.fail(status)
        self.calls.clear()
        self._ping_acked.set()
        self.writable.set()
        if self.transport is not None and not self.transport.is_closing():
            if self.conn.failed is None:   # else the codec's own GOAWAY went out already
                self.conn.goaway(NO_ERROR)
                self.transport.write(self.conn.data_to_send())
            self.close_transport()

    def _abort(self, status: Status) -> None:
        """Drops the connection at once (nothing more will be read from it)."""
        self._lose(status)
        if self.transport is not None:
            self.transport.abort()

    async def _keepalive_loop(self) -> None:
        interval, timeout = self.keepalive.interval, self.keepalive.timeout
        loop = asyncio.get_running_loop()
        sent = 0
        while self.lost is None:
            idle = loop.time() - self._last_read
            if idle < interval:
                await _wait_for(self._closed, interval - idle)
                continue
            sent += 1
            self._ping_payload = sent.to_bytes(8, "big")
            self._ping_acked.clear()
            self.conn.ping(self._ping_payload)
            self.flush()
            if not await _wait_for(self._ping_acked, timeout) and self.lost is None:
                log.warning("%s: keepalive ping not acknowledged within %gs; closing the connection",
                            self.target, timeout)
                self._abort(Status(st.UNAVAILABLE, f"{self.target}: keepalive ping not acknowledged "
                                                   f"within {timeout:g}s"))

    def __repr__(self) -> str:
        state = "open" if self.lost is None else f"lost ({self.lost.message})"
        return (f"<Channel {self.target} {state} calls={len(self.calls)} goaway={self.goaway is not None} "
                f"pings_acked={self.pings_acked}>")


async def _wait_for(event: asyncio.Event, timeout: float) -> bool:
    """True if `event` was set within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False
