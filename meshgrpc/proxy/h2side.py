"""What both ends of the relay share: an asyncio Protocol around one HTTP/2
connection of meshgrpc's codec (meshgrpc/codec), the Flusher that batches
transport writes, and the transport-level limits of a hardened edge.

Write batching: handlers only queue frames in the codec and `touch()` the
connection; each entry point (data_received, a timer, a connect completing) ends
with `flusher.flush()`, which does one transport.write per touched connection. A
downstream batch that drives ten upstream streams costs one write per socket.

Fairness and bounded memory, per connection:
- a read is handled at most READ_BUDGET bytes at a time; the rest waits for the
  next turn of the event loop with reading paused, so one connection that sends
  256 KiB of tiny frames does not hold the loop while others wait;
- the transport's write buffer has a high-water mark: a peer that stops reading
  what we send stops being read from (it cannot make us queue answers without
  bound), and is closed if it has not drained within `stall_timeout`;
- a connection the peer hangs up drops its streams and buffers at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from meshgrpc.codec import Connection, ConnectionFailed, Counters, Limits
from meshgrpc.codec.errors import CANCEL

log = logging.getLogger(__name__)

# Bytes of one read handled before other connections get the event loop.
READ_BUDGET = 16 << 10
# Why reading from a connection is paused (bits: each reason resumes its own).
PAUSED_FOR_BUDGET, PAUSED_PEER_STALLED, PAUSED_AFTER_FLOOD = 1, 2, 4
# Transport write buffer: above HIGH the peer is not reading (stop reading from
# it); below LOW it is again.
WRITE_HIGH, WRITE_LOW = 1 << 20, 256 << 10


class SampledLog:
    """At most one line per `period` seconds for an event a flood repeats once per
    connection (a flooding client reconnects hundreds of times a second; a line
    for each would make the log the attack); each line says how many it stands for."""

    __slots__ = ("logger", "period", "clock", "_next", "_skipped")

    def __init__(self, logger: logging.Logger, period: float = 1.0, clock=time.monotonic) -> None:
        self.logger, self.period, self.clock = logger, period, clock
        self._next, self._skipped = float("-inf"), 0

    def info(self, message: str, *args) -> None:
        now = self.clock()
        if now < self._next:
            self._skipped += 1
            return
        if self._skipped:
            message += f" (and {self._skipped} more like it in the last {self.period:g}s)"
        self._next, self._skipped = now + self.period, 0
        self.logger.info(message, *args)


_peer_errors = SampledLog(log)


def running_loop():
    """The running event loop; None outside one (in-memory tests handle reads whole)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Flusher:
    """Connections with queued output, written out together (one per event loop)."""

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
    """One HTTP/2 connection (downstream or upstream) of the relay: the codec's
    handler (its callbacks are methods here and in the subclasses) and the
    transport's protocol.

    `calls` maps this side's stream ids to the relay's stream objects (Calls
    downstream, Attempts upstream); `blocked` holds the senders waiting for this
    connection's send window (resumed on WINDOW_UPDATE/SETTINGS through their
    `pump()`). Subclasses implement the stream callbacks they receive.
    """

    def __init__(self, flusher: Flusher, *, client: bool, limits: Limits, counters: Counters | None = None,
                 stall_timeout: float = 30.0) -> None:
        self.h2 = Connection(self, client=client, limits=limits, counters=counters)
        self.flusher = flusher
        self.transport: asyncio.Transport | None = None
        self.dirty = False
        self.closed = False
        self.calls: dict[int, object] = {}
        self.blocked: set = set()
        self._stall_timeout = stall_timeout
        self._paused = 0  # why reading is paused: bits PAUSED_*
        self._backlog: list[bytes] = []  # the rest of a read beyond READ_BUDGET
        self._stall_timer: asyncio.TimerHandle | None = None

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

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        """RST_STREAM unless the codec already considers the stream closed."""
        if not self.closed:
            self.h2.reset_stream(stream_id, code)
            self.touch()

    def ack(self, stream_id: int, n: int) -> None:
        """Hand `n` flow-controlled bytes back to the peer (stream and connection)."""
        if n and not self.closed:
            self.h2.acknowledge(stream_id, n)
            self.touch()

    def ack_stream(self, stream_id: int, n: int) -> None:
        if n and not self.closed:
            self.h2.acknowledge_stream(stream_id, n)
            self.touch()

    def ack_connection(self, n: int) -> None:
        if n and not self.closed:
            self.h2.acknowledge_connection(n)
            self.touch()

    def hang_up(self) -> None:
        """Write what is queued (a GOAWAY), then close."""
        if self.transport is not None and not self.closed:
            self.touch()
            self.flusher.flush()
            self.transport.close()

    # -- input ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.touch()
        self.flusher.flush()

    def data_received(self, data: bytes) -> None:
        if self._backlog:  # arrived while a budgeted read waits: keep the order
            self._backlog.append(data)
            return
        if len(data) > READ_BUDGET and (loop := running_loop()) is not None:
            self._backlog.append(data[READ_BUDGET:])
            data = data[:READ_BUDGET]
            self._pause(PAUSED_FOR_BUDGET)
            loop.call_soon(self._read_backlog)
        self._receive(data)

    def _read_backlog(self) -> None:
        if self.closed or not self._backlog:
            return
        data = b"".join(self._backlog)
        self._backlog = []
        if len(data) > READ_BUDGET:
            self._backlog.append(data[READ_BUDGET:])
            data = data[:READ_BUDGET]
            asyncio.get_running_loop().call_soon(self._read_backlog)
        else:
            self._resume(PAUSED_FOR_BUDGET)
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        try:
            self.h2.receive(data)
        except ConnectionFailed as e:
            # The codec queued GOAWAY with the error's code: send it and hang up.
            _peer_errors.info("%r: connection error from peer (code %d): %s", self, e.code, e)
            self.peer_failed()
            self.hang_up()
            return
        self.after_receive()
        self.touch()
        self.flusher.flush()

    def after_receive(self) -> None:
        """Called once the codec has handled a read, before its output is written."""

    def peer_failed(self) -> None:
        """The peer broke the protocol or a flood limit; its connection is ending."""

    # -- backpressure from the peer ----------------------------------------------
    def pause_writing(self) -> None:
        # Our output is piling up: the peer does not read. Stop reading from it too.
        self._pause(PAUSED_PEER_STALLED)
        if self._stall_timer is None:
            self._stall_timer = asyncio.get_running_loop().call_later(self._stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        self._resume(PAUSED_PEER_STALLED)
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        log.info("%r: peer read nothing for %.0fs; closing", self, self._stall_timeout)
        if self.transport is not None:
            self.transport.abort()

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        self._paused &= ~reason
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def forget(self) -> None:
        """The connection is gone: drop everything it holds (no cycles to wait for)."""
        self.closed = True
        self.blocked.clear()
        self._backlog = []
        self.h2.detach()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    # -- codec callbacks both sides handle alike ------------------------------------
    def on_window_update(self, stream_id: int) -> None:
        if stream_id == 0:
            self.resume_blocked()
            return
        stream = self.calls.get(stream_id)
        if stream is not None:
            stream.window_opened()

    def on_settings(self) -> None:
        # INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE changes can unblock sends.
        self.resume_blocked()

    def on_ping_ack(self, payload: bytes) -> None:
        pass

    def data_for_dropped_stream(self, stream_id: int, flow_len: int) -> None:
        # The call is gone (finished, failed, reset): the bytes still count against
        # the connection window, so give them back or the connection stalls.
        self.ack(stream_id, flow_len)

    def resume_blocked(self) -> None:
        for sender in list(self.blocked):
            sender.pump()
