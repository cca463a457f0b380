"""Link: what both ends of a grpcwire connection share (channel.py for the
client, server.py for the server): the asyncio Protocol around one codec
Connection, its calls by stream id, the transport's backpressure (`writable`,
which flow.send_data waits on) and the codec callbacks that only route an
event to its call. A call here has on_data(data, flow_len, end_stream),
on_reset(code), on_window() and `stream_id`.

Writes: a read's output is written once, after the whole read is handled
(`_receiving`); outside a read, each flush() writes what is queued. A read the
codec refuses (ConnectionFailed: it queued GOAWAY) goes to `protocol_failed()`.
"""

from __future__ import annotations

import asyncio

from meshgrpc.codec import Connection, ConnectionFailed
from meshgrpc.wakeup import Wakeup


class Link(asyncio.Protocol):
    def __init__(self, conn: Connection, *, tls: bool) -> None:
        self.conn = conn
        self.tls = tls
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, object] = {}
        # The transport's buffer is below its high-water mark (only read: calls wait
        # on their own wakeups, which resume_writing() sets).
        self.writable = Wakeup()
        self.writable.set()
        self._receiving = False

    def down(self) -> bool:
        """True once the connection cannot carry calls (lost, closed)."""
        raise NotImplementedError

    def protocol_failed(self, error: ConnectionFailed) -> None:
        """The peer broke HTTP/2 or a limit; the codec's GOAWAY has been written."""
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        self._receiving = True
        try:
            self.conn.receive(data)
        except ConnectionFailed as e:
            self._receiving = False
            self.flush()
            self.protocol_failed(e)
            return
        finally:
            self._receiving = False
        self.flush()

    def close_transport(self) -> None:
        """Closes the connection once what is queued is written. Over TLS, at once:
        asyncio's TLS close waits for the peer's close_notify, which grpc-core never
        sends; like grpc-go, close the socket (an SSL transport writes through to it)."""
        if self.tls:
            self.transport.abort()
        else:
            self.transport.close()

    def acknowledge(self, stream_id: int, n: int) -> None:
        """Hand `n` flow-controlled bytes of the stream back to the peer."""
        if not self.down():
            self.conn.acknowledge(stream_id, n)
            self.flush()

    def release(self, call, reset: int | None, owed: int) -> None:
        """The call ended: forget it, hand back what it still owed the connection
        window, reset its stream (with `reset`) if it is still open."""
        self.calls.pop(call.stream_id, None)
        if self.down():
            return
        if owed:
            self.conn.acknowledge(call.stream_id, owed)
        if reset is not None:
            self.conn.reset_stream(call.stream_id, reset)
        self.flush()

    def flush(self) -> None:
        if self._receiving or self.transport is None:
            return   # the read being handled writes once it is done
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()
        self._wake_all()

    # -- codec callbacks that only route the event to its call -------------------------
    def on_data(self, stream_id, data, flow_len, end_stream) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            self.conn.acknowledge(stream_id, flow_len)   # the connection window must not leak
            return
        call.on_data(data, flow_len, end_stream)

    def on_reset(self, stream_id, code) -> None:
        if (call := self.calls.get(stream_id)) is not None:
            call.on_reset(code)

    def on_window_update(self, stream_id) -> None:
        if stream_id == 0:
            self._wake_all()
        elif (call := self.calls.get(stream_id)) is not None:
            call.on_window()

    def on_ping_ack(self, payload) -> None:
        pass

    def _wake_all(self) -> None:
        for call in list(self.calls.values()):
            call.on_window()
