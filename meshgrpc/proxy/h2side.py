"""What both ends of the relay share: an asyncio Protocol around one h2 connection,
and the Flusher that batches transport writes.

Write batching: handlers only queue frames in h2 and `touch()` the connection;
each entry point (data_received, a timer, a connect completing) ends with
`flusher.flush()`, which does one transport.write per touched connection. A
downstream batch that drives ten upstream streams costs one write per socket.
"""

from __future__ import annotations

import asyncio
import logging

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError, StreamClosedError

log = logging.getLogger(__name__)


class Flusher:
    """Connections with queued h2 output, written out together (one per event loop)."""

    __slots__ = ("dirty",)

    def __init__(self) -> None:
        self.dirty: list[H2Side] = []

    def flush(self) -> None:
        dirty = self.dirty
        while dirty:
            self.dirty = []
            for side in dirty:
                side.write_out()
            dirty = self.dirty  # writing never queues more, but stay safe


class H2Side(asyncio.Protocol):
    """One HTTP/2 connection (downstream or upstream) of the relay.

    `calls` maps this side's stream ids to the relay's stream objects (Calls
    downstream, Attempts upstream); `blocked` holds the senders waiting for this
    connection's send window (resumed on WINDOW_UPDATE/SETTINGS through their
    `pump()`). Subclasses fill `handlers` (event type -> method).
    """

    handlers: dict = {}

    def __init__(self, h2, flusher: Flusher) -> None:
        self.h2 = h2
        self.flusher = flusher
        self.transport: asyncio.Transport | None = None
        self.dirty = False
        self.closed = False
        self.calls: dict[int, object] = {}
        self.blocked: set = set()

    # -- output -----------------------------------------------------------------
    def touch(self) -> None:
        if not self.dirty:
            self.dirty = True
            self.flusher.dirty.append(self)

    def write_out(self) -> None:
        self.dirty = False
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def reset(self, stream_id: int, code: int = ErrorCodes.CANCEL) -> None:
        """RST_STREAM unless h2 already considers the stream closed."""
        if self.closed:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except StreamClosedError:
            return
        self.touch()

    def ack(self, stream_id: int, n: int) -> None:
        """Hand `n` flow-controlled bytes back to the peer (stream and connection)."""
        if n and not self.closed:
            self.h2.acknowledge_received_data(n, stream_id)
            self.touch()

    # -- input ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.touch()
        self.flusher.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as e:
            # h2 has queued a GOAWAY with the error code; send it and hang up.
            log.info("%r: protocol error from peer: %s", self, e)
            self.touch()
            self.flusher.flush()
            self.transport.close()
            return
        handlers = self.handlers
        for ev in events:
            handler = handlers.get(ev.__class__)
            if handler is not None:
                handler(self, ev)
        self.touch()
        self.flusher.flush()

    def on_data_for_dropped_stream(self, ev) -> None:
        # The call is gone (finished, failed, reset): the bytes still count against
        # the connection window, so give them back or the connection stalls.
        self.ack(ev.stream_id, ev.flow_controlled_length)

    def on_window_updated(self, ev) -> None:
        if ev.stream_id == 0:
            self.resume_blocked()
            return
        stream = self.calls.get(ev.stream_id)
        if stream is not None:
            stream.window_opened()

    def on_settings_changed(self, ev) -> None:
        # INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE changes can unblock sends.
        self.resume_blocked()

    def resume_blocked(self) -> None:
        for sender in list(self.blocked):
            sender.pump()
