"""One HTTP/2 connection, sans I/O (RFC 9113): bytes in, handler callbacks out,
bytes to send. Built for relaying gRPC: no event objects, DATA as memoryviews of
the received bytes, HPACK results cached, and the limits of a hardened edge.

Contract
--------
Who calls what: the owner of the transport creates `Connection(handler,
client=...)`, feeds every received chunk to `receive(data)` and, after each
batch of calls, writes what `data_to_send()` returns. Nothing here does I/O,
awaits, or reads a clock except the injected `clock` (limits only).

receive() calls these methods of `handler`, in frame order, synchronously:
  on_request(stream_id, headers, end_stream)   server role: a new, well-formed request
  on_response(stream_id, headers, end_stream)  client role: the final response (1xx skipped);
                                                end_stream: trailers-only, one HEADERS frame
  on_trailers(stream_id, headers)              trailers; they end the stream
  on_data(stream_id, data, flow_controlled_length, end_stream)
                                                `data` is a memoryview of the received bytes
                                                (copy it to keep it past the callback without
                                                pinning the whole chunk); hand the stream's
                                                flow_controlled_length (data and padding)
                                                back with acknowledge() once consumed
  on_reset(stream_id, error_code)              the peer reset the stream, or the codec did
                                                (a stream error on a stream the caller knows)
  on_window_update(stream_id)                  more send window (0: the connection's)
  on_settings()                                the peer's settings changed (windows, frame size)
  on_goaway(error_code, last_stream_id, debug) the connection stays usable for streams
                                                <= last_stream_id (RFC 9113 §6.8); ours above
                                                it were never processed: the caller retries
                                                or fails them, and resets them
  on_ping_ack(payload)
Handlers may call any method of the connection, including for other streams.
Headers are tuples of (name, value) bytes fields, shared with the HPACK cache
(immutable); a field received never-indexed is a hpack.NeverIndexed and should be
forwarded as it is (RFC 7541 §6.2.3). Malformed messages (RFC 9113 §8.1.1, see
headers.py) are reset with PROTOCOL_ERROR and never reach the handler as
requests.

Errors: receive() raises ConnectionFailed on a connection error after queuing
GOAWAY with its code: send data_to_send() and close; every later call raises it
again. send_headers() on a new stream raises TooManyStreams (the peer's
MAX_CONCURRENT_STREAMS) or GoingAway (GOAWAY sent or received); sends on a stream
closed for sending raise StreamClosed; send_data() beyond send_window() raises
FlowControlBlocked. reset_stream() and acknowledge() on closed streams do what
is still useful (nothing, or the connection window) and never raise.

Where RFC 9113 leaves a choice, the codec picks the one that keeps a relay
serving: a stream beyond our MAX_CONCURRENT_STREAMS is refused with REFUSED_STREAM
(clients retry it); frames for streams already closed are ignored (DATA credited
back to the connection window at once); GOAWAY in either direction does not
close the connection (python-hyper/h2 issue 1181).
"""

from __future__ import annotations

import struct
import time

from meshgrpc.codec import frames as F
from meshgrpc.codec.streams import (
    CLOSED, HALF_CLOSED_LOCAL, HALF_CLOSED_REMOTE, IDLE, OPEN, RECV_DATA, RECV_END_STREAM, RECV_HEADERS,
    NOT_ALLOWED, SEND_DATA, SEND_END_STREAM, SEND_HEADERS, TRANSITIONS, Stream,
)
from meshgrpc.codec.errors import (
    CANCEL, ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, NO_ERROR, PROTOCOL_ERROR,
    REFUSED_STREAM, STREAM_CLOSED, ConnectionFailed, FlowControlBlocked, GoingAway, HpackError,
    StreamClosed, TooManyStreams,
)
from meshgrpc.codec.guard import Guard
from meshgrpc.codec.headers import REQUEST, RESPONSE, TRAILERS, validate
from meshgrpc.codec.hpack import DEFAULT_TABLE_SIZE, Decoder, Encoder
from meshgrpc.codec.limits import DEFAULT_LIMITS, Counters, Limits

_HEADER = struct.Struct(">BHBBL")
_STREAM_MASK = 0x7FFFFFFF
# Largest HPACK table our encoder uses whatever the peer allows (RFC 7541 §4.2
# lets an encoder use less): bounds the memory a peer's large
# SETTINGS_HEADER_TABLE_SIZE could make us spend.
ENCODER_MAX_TABLE_SIZE = DEFAULT_TABLE_SIZE
_UNLIMITED = 1 << 31


class Connection:
    """One HTTP/2 connection in the client or the server role (module doc)."""

    def __init__(self, handler, *, client: bool, limits: Limits = DEFAULT_LIMITS,
                 counters: Counters | None = None, clock=time.monotonic) -> None:
        self.client = client
        self.limits = limits
        self.counters = counters if counters is not None else Counters()
        self.clock = clock
        self._bind(handler)
        self.streams: dict[int, Stream] = {}
        self.encoder = Encoder()
        self.decoder = Decoder(validate, limits.max_header_list_size)
        self.failed: ConnectionFailed | None = None
        self._out: list = []
        self._queued_control = 0
        self._pending: list = []  # bytes of an incomplete frame (or preface)
        self._pending_len = 0
        self._need = 9  # octets needed before the held bytes can be parsed
        self._await_preface = not client
        self._await_settings = True
        # The peer's settings (RFC 9113 §6.5.2 defaults until its SETTINGS arrive).
        self.peer_max_concurrent_streams = _UNLIMITED
        self.peer_initial_window = F.DEFAULT_WINDOW
        self.max_outbound_frame_size = F.DEFAULT_MAX_FRAME_SIZE
        self.peer_max_header_list_size = _UNLIMITED
        self.conn_send_window = F.DEFAULT_WINDOW
        self.conn_recv_window = limits.connection_window
        self._conn_unacked = 0
        self.highest_inbound = 0
        self._next_outbound = 1 if client else 2
        self.open_inbound = self.open_outbound = 0
        self.goaway_sent: int | None = None
        self.goaway_received: int | None = None
        # Header block being received (HEADERS without END_HEADERS, then CONTINUATION).
        self._block_sid = 0
        self._block_parts: list = []
        self._block_len = 0
        self._block_end_stream = False
        self.guard = Guard(limits, self.counters, clock)
        self._max_frame_size = limits.max_frame_size
        self._max_header_list_size = limits.max_header_list_size
        self._stream_window = limits.stream_window
        self._connection_window = limits.connection_window
        self._start()

    def detach(self) -> None:
        """Forget the handler (its callbacks hold it, and it holds this connection):
        a connection its owner dropped is freed at once, not at the next full GC,
        and later input reaches nobody."""
        self._bind(_NO_HANDLER)

    def _bind(self, handler) -> None:
        # Bound once: a callback costs one call, no attribute lookup on the handler.
        self._on_request = handler.on_request
        self._on_response = handler.on_response
        self._on_trailers = handler.on_trailers
        self._on_data = handler.on_data
        self._on_reset = handler.on_reset
        self._on_window_update = handler.on_window_update
        self._on_settings = handler.on_settings
        self._on_goaway = handler.on_goaway
        self._on_ping_ack = handler.on_ping_ack

    def _start(self) -> None:
        limits = self.limits
        values = {F.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                  F.INITIAL_WINDOW_SIZE: limits.stream_window,
                  F.MAX_HEADER_LIST_SIZE: limits.max_header_list_size}
        if limits.max_frame_size != F.DEFAULT_MAX_FRAME_SIZE:
            values[F.MAX_FRAME_SIZE] = limits.max_frame_size
        if self.client:
            values[F.ENABLE_PUSH] = 0
            self._out.append(F.PREFACE)
        self._out.append(F.settings(values))
        if limits.connection_window > F.DEFAULT_WINDOW:
            # SETTINGS never changes the connection window (RFC 9113 §6.9.2).
            self._out.append(F.window_update(0, limits.connection_window - F.DEFAULT_WINDOW))

    def __repr__(self) -> str:
        role = "client" if self.client else "server"
        return (f"<Connection {role} streams={len(self.streams)} send_window={self.conn_send_window} "
                f"goaway_sent={self.goaway_sent} goaway_received={self.goaway_received} "
                f"failed={self.failed is not None}>")

    # -- output -----------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one bytes object."""
        out = self._out
        if not out:
            return b""
        self._out = []
        self._queued_control = 0
        return b"".join(out)

    def _control(self, frame: bytes) -> None:
        """Queue a control frame the peer's input made us send; too many queued
        and not taken is a flood (limits.max_queued_control_frames)."""
        self._out.append(frame)
        self._queued_control += 1
        if self._queued_control > self.limits.max_queued_control_frames:
            self.counters.control_queue_full += 1
            self._fail(ENHANCE_YOUR_CALM, "too many control frames queued")

    def _fail(self, code: int, message: str) -> None:
        """A connection error (RFC 9113 §5.4.1): queue GOAWAY, refuse from now on."""
        if self.failed is None:
            self.failed = ConnectionFailed(code, message)
            if code == PROTOCOL_ERROR:
                self.counters.protocol_errors += 1
            self._out.append(F.goaway(self.highest_inbound, code, message.encode()[:256]))
        raise self.failed

    # -- input ------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Parse `data` (bytes) and call the handler for each complete frame."""
        if self.failed is not None:
            raise self.failed
        if self._pending:
            # Part of a frame is held: join only once the whole frame is here, so a
            # frame arriving in many small reads is copied once, not once per read.
            self._pending.append(data)
            self._pending_len += len(data)
            if self._pending_len < self._need:
                return
            data = b"".join(self._pending)
            self._pending, self._pending_len = [], 0
        pos = 0
        if self._await_preface:
            pos = self._preface(data)
            if pos < 0:
                self._hold(data, len(F.PREFACE))
                return
        self._frames(data, pos)

    def _frames(self, buf: bytes, pos: int) -> int:
        """Handle each complete frame from `pos`, and hold the incomplete rest
        (also when a handler raises: the frames before it are not seen twice)."""
        end = len(buf)
        view = memoryview(buf)
        max_frame = self._max_frame_size
        unpack = _HEADER.unpack_from
        self._need = 9
        try:
            while end - pos >= 9:
                hi, lo, ftype, flags, sid = unpack(buf, pos)
                length = (hi << 16) | lo
                if length > max_frame:  # refused at the header, nothing buffered (issue 9)
                    self.counters.frame_too_large += 1
                    self._fail(FRAME_SIZE_ERROR, f"frame of {length} octets above SETTINGS_MAX_FRAME_SIZE")
                start = pos + 9
                if end - start < length:
                    self._need = 9 + length
                    break
                pos = start + length
                self._frame(ftype, flags, sid & _STREAM_MASK, buf, view, start, pos)
        finally:
            if pos < end and self.failed is None:
                self._hold(buf[pos:], 9)
        return pos

    def _hold(self, rest: bytes, need: int) -> None:
        self._pending = [rest]
        self._pending_len = len(rest)
        self._need = max(need, self._need)

    def _preface(self, buf: bytes) -> int:
        n = len(F.PREFACE)
        if buf[:n] != F.PREFACE[:len(buf)]:
            self._fail(PROTOCOL_ERROR, "invalid connection preface")
        if len(buf) < n:
            return -1
        self._await_preface = False
        return n

    def _frame(self, ftype: int, flags: int, sid: int, buf, view, start: int, end: int) -> None:
        if self._block_sid and ftype != F.CONTINUATION:
            self._fail(PROTOCOL_ERROR, "header block interrupted by another frame")
        if self._await_settings:
            if ftype != F.SETTINGS or flags & F.FLAG_ACK:  # RFC 9113 §3.4
                self.counters.first_frame_not_settings += 1
                self._fail(PROTOCOL_ERROR, "first frame is not SETTINGS")
            self._await_settings = False
        if ftype == F.DATA:
            self._recv_data(flags, sid, buf, view, start, end)
        elif ftype == F.HEADERS:
            self._recv_headers(flags, sid, buf, start, end)
        elif ftype == F.CONTINUATION:
            self._recv_continuation(flags, sid, buf, start, end)
        elif ftype == F.WINDOW_UPDATE:
            self._recv_window_update(flags, sid, buf, start, end)
        elif ftype == F.SETTINGS:
            self._recv_settings(flags, sid, buf, start, end)
        elif ftype == F.PING:
            self._recv_ping(flags, sid, buf, start, end)
        elif ftype == F.RST_STREAM:
            self._recv_rst_stream(flags, sid, buf, start, end)
        elif ftype == F.GOAWAY:
            self._recv_goaway(flags, sid, buf, start, end)
        elif ftype == F.PRIORITY:
            self._recv_priority(flags, sid, buf, start, end)
        elif ftype == F.PUSH_PROMISE:
            self._recv_push_promise(flags, sid, buf, start, end)
        # Unknown frame types are ignored (RFC 9113 §5.5).

    def _calm(self, why) -> None:
        """What a Guard check decided (guard.py): end the connection, or go on."""
        if why is not None:
            self._fail(ENHANCE_YOUR_CALM, why)

    def _unpad(self, flags: int, buf, start: int, end: int) -> tuple[int, int]:
        if not flags & F.FLAG_PADDED:
            return start, end
        if start == end:
            self._fail(FRAME_SIZE_ERROR, "padded frame without a pad length")
        pad = buf[start]
        start += 1
        if pad > end - start:  # RFC 9113 §6.1
            self._fail(PROTOCOL_ERROR, "padding longer than the frame payload")
        return start, end - pad

    def _is_idle(self, sid: int) -> bool:
        """A stream id never used yet (RFC 9113 §5.1.1)."""
        if (sid & 1) == (1 if self.client else 0):  # ours
            return sid >= self._next_outbound
        return sid > self.highest_inbound

    # -- DATA -------------------------------------------------------------------------
    def _recv_data(self, flags: int, sid: int, buf, view, start: int, end: int) -> None:
        if sid == 0:
            self._fail(PROTOCOL_ERROR, "DATA on stream 0")
        flow_len = end - start
        start, end = self._unpad(flags, buf, start, end)
        self.conn_recv_window -= flow_len
        if self.conn_recv_window < 0:
            self._fail(FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self._calm(self.guard.empty_frame(start == end, flags & F.FLAG_END_STREAM))
        stream = self.streams.get(sid)
        if stream is None:
            if self._is_idle(sid):
                self._fail(PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            self._credit_connection(flow_len)  # closed: nobody else will
            return
        state = TRANSITIONS[stream.state * 8 + RECV_DATA]
        if state < 0:
            self._credit_connection(flow_len)
            self._stream_error(stream, STREAM_CLOSED)
            return
        stream.recv_window -= flow_len
        if stream.recv_window < 0:
            self._fail(FLOW_CONTROL_ERROR, f"DATA beyond the window of stream {sid}")
        if self.client and stream.blocks_in == 0:  # DATA before the response: malformed (RFC 9113 §8.1)
            self.counters.malformed_messages += 1
            self._credit_connection(flow_len)
            self._stream_error(stream, PROTOCOL_ERROR)
            return
        end_stream = flags & F.FLAG_END_STREAM
        if end_stream:
            self._set_state(stream, TRANSITIONS[state * 8 + RECV_END_STREAM])
        self._on_data(sid, view[start:end], flow_len, bool(end_stream))

    # -- header blocks ----------------------------------------------------------------
    def _recv_headers(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        if sid == 0:
            self._fail(PROTOCOL_ERROR, "HEADERS on stream 0")
        start, end = self._unpad(flags, buf, start, end)
        self_dependent = False
        if flags & F.FLAG_PRIORITY:
            if end - start < 5:
                self._fail(FRAME_SIZE_ERROR, "HEADERS too short for its priority fields")
            self_dependent = F.u31(buf, start) == sid
            start += 5
        self._calm(self.guard.empty_frame(start == end, flags & F.FLAG_END_STREAM))
        end_stream = bool(flags & F.FLAG_END_STREAM)
        if flags & F.FLAG_END_HEADERS:
            self._header_block(sid, buf[start:end], end_stream, self_dependent)
            return
        self._block_sid = sid
        self._block_parts = [buf[start:end]]
        self._block_len = end - start
        self._block_end_stream = end_stream
        self._check_block_size()

    def _recv_continuation(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        if sid == 0 or sid != self._block_sid:
            self._fail(PROTOCOL_ERROR, "CONTINUATION without a header block in progress")
        self._calm(self.guard.empty_frame(start == end, False))
        self._block_parts.append(buf[start:end])
        self._block_len += end - start
        self._check_block_size()
        if flags & F.FLAG_END_HEADERS:
            block = b"".join(self._block_parts)
            self._block_sid, self._block_parts = 0, []
            self._header_block(sid, block, self._block_end_stream, False)

    def _check_block_size(self) -> None:
        # Counted as the fragments arrive, so a peer cannot park an endless
        # block in our memory (issue 9: CONTINUATION flood).
        if self._block_len > self._max_header_list_size:
            self.counters.header_list_too_large += 1
            self._fail(ENHANCE_YOUR_CALM, "header block larger than SETTINGS_MAX_HEADER_LIST_SIZE")

    def _decode(self, block: bytes, kind: int):
        try:
            return self.decoder.decode(block, kind)
        except HpackError as e:
            if e.code == ENHANCE_YOUR_CALM:
                self.counters.header_list_too_large += 1
            self._fail(e.code, f"header block: {e}")

    def _header_block(self, sid: int, block: bytes, end_stream: bool, self_dependent: bool) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            if self.client or (sid & 1) == 0 or sid <= self.highest_inbound:
                if self._is_idle(sid):
                    self._fail(PROTOCOL_ERROR, f"HEADERS opening stream {sid} not allowed")
                self._decode(block, TRAILERS)  # a closed stream: keep HPACK in step, ignore
                return
            self._new_request(sid, block, end_stream, self_dependent)
            return
        kind = RESPONSE if self.client and stream.blocks_in == 0 else TRAILERS
        headers, malformed = self._decode(block, kind)
        state = TRANSITIONS[stream.state * 8 + RECV_HEADERS]
        if state < 0:
            self._stream_error(stream, STREAM_CLOSED)
            return
        if malformed is not None or self_dependent or (kind == TRAILERS and not end_stream):
            self.counters.malformed_messages += 1
            self._stream_error(stream, PROTOCOL_ERROR)
            return
        if len(headers) > self.limits.max_header_fields:
            self.counters.too_many_header_fields += 1
            self._stream_error(stream, ENHANCE_YOUR_CALM)
            return
        if kind == RESPONSE and _informational(headers):
            if end_stream:  # a 1xx cannot end the stream (RFC 9113 §8.1)
                self._stream_error(stream, PROTOCOL_ERROR)
            return
        stream.blocks_in += 1
        if end_stream:
            state = TRANSITIONS[state * 8 + RECV_END_STREAM]
        self._set_state(stream, state)
        if kind == RESPONSE:
            self._on_response(sid, headers, end_stream)
        else:
            self._on_trailers(sid, headers)

    def _new_request(self, sid: int, block: bytes, end_stream: bool, self_dependent: bool) -> None:
        """A client opens stream `sid` (server role)."""
        self.highest_inbound = sid
        headers, malformed = self._decode(block, REQUEST)  # always: HPACK state is shared
        if self.goaway_sent is not None and sid > self.goaway_sent:
            self._control(F.rst_stream(sid, REFUSED_STREAM))  # RFC 9113 §6.8
            return
        code = 0
        if self.open_inbound >= self.limits.max_concurrent_streams:
            self.counters.refused_streams += 1
            code = REFUSED_STREAM  # RFC 9113 §5.1.2
        elif malformed is not None or self_dependent:
            self.counters.malformed_messages += 1
            code = PROTOCOL_ERROR  # RFC 9113 §8.1.1
        elif len(headers) > self.limits.max_header_fields:
            self.counters.too_many_header_fields += 1
            code = ENHANCE_YOUR_CALM
        if code:
            self._control(F.rst_stream(sid, code))
            return
        state = HALF_CLOSED_REMOTE if end_stream else OPEN
        stream = Stream(sid, state, self.peer_initial_window, self._stream_window, True, self.guard.opened_at())
        self.streams[sid] = stream
        self.open_inbound += 1
        self._calm(self.guard.stream_opened(True))
        self._on_request(sid, headers, end_stream)

    # -- control frames ---------------------------------------------------------------
    def _recv_priority(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        if sid == 0:
            self._fail(PROTOCOL_ERROR, "PRIORITY on stream 0")
        if end - start != 5:
            self._fail(FRAME_SIZE_ERROR, "PRIORITY payload is not 5 octets")
        stream = self.streams.get(sid)
        if F.u31(buf, start) == sid and stream is not None:  # RFC 9113 §5.3.1
            self._stream_error(stream, PROTOCOL_ERROR)
        # Otherwise ignored: RFC 9113 deprecates the priority scheme (§5.3.2).

    def _recv_rst_stream(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        if sid == 0:
            self._fail(PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if end - start != 4:
            self._fail(FRAME_SIZE_ERROR, "RST_STREAM payload is not 4 octets")
        stream = self.streams.get(sid)
        if stream is None:
            if self._is_idle(sid):
                self._fail(PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
            return
        self._close(stream)
        if stream.inbound:
            self._calm(self.guard.peer_reset(stream.opened_at))
        self._on_reset(sid, F.u32(buf, start))

    def _recv_settings(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        if sid != 0:
            self._fail(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & F.FLAG_ACK:
            if end != start:
                self._fail(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if (end - start) % 6:
            self._fail(FRAME_SIZE_ERROR, "SETTINGS payload not a multiple of 6 octets")
        self._calm(self.guard.settings())
        values = list(F.parse_settings(buf, start, end))
        for ident, value in values:  # all checked before any applies (h2 does the same)
            problem = F.setting_problem(ident, value, self.client)
            if problem is not None:
                self._fail(problem[0], problem[1])
        for ident, value in values:
            self._apply_setting(ident, value)
        self._control(F.SETTINGS_ACK)
        self._on_settings()

    def _apply_setting(self, ident: int, value: int) -> None:
        if ident == F.HEADER_TABLE_SIZE:
            size = min(value, ENCODER_MAX_TABLE_SIZE)
            if size != self.encoder.table.maxsize:
                self.encoder.set_max_table_size(size)
        elif ident == F.MAX_CONCURRENT_STREAMS:
            self.peer_max_concurrent_streams = value
        elif ident == F.INITIAL_WINDOW_SIZE:
            delta = value - self.peer_initial_window
            self.peer_initial_window = value
            for stream in self.streams.values():  # RFC 9113 §6.9.2
                stream.send_window += delta
                if stream.send_window > F.MAX_WINDOW:
                    self._fail(FLOW_CONTROL_ERROR, "stream window above 2^31-1")
        elif ident == F.MAX_FRAME_SIZE:
            self.max_outbound_frame_size = value
        elif ident == F.MAX_HEADER_LIST_SIZE:
            self.peer_max_header_list_size = value
        # Unknown settings are ignored (RFC 9113 §6.5.2).

    def _recv_push_promise(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        # We never enable push (RFC 9113 §8.4): a connection error either way.
        self._fail(PROTOCOL_ERROR, "PUSH_PROMISE received with push disabled")

    def _recv_ping(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        if sid != 0:
            self._fail(PROTOCOL_ERROR, "PING on a stream")
        if end - start != 8:
            self._fail(FRAME_SIZE_ERROR, "PING payload is not 8 octets")
        payload = buf[start:end]
        if flags & F.FLAG_ACK:
            self._on_ping_ack(payload)
            return
        self._calm(self.guard.ping())
        self._control(F.ping(payload, ack=True))

    def _recv_goaway(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        if sid != 0:
            self._fail(PROTOCOL_ERROR, "GOAWAY on a stream")
        if end - start < 8:
            self._fail(FRAME_SIZE_ERROR, "GOAWAY payload shorter than 8 octets")
        last = F.u31(buf, start)
        if self.goaway_received is None or last < self.goaway_received:
            self.goaway_received = last
        self._on_goaway(F.u32(buf, start + 4), last, buf[start + 8:end])

    def _recv_window_update(self, flags: int, sid: int, buf, start: int, end: int) -> None:
        if end - start != 4:
            self._fail(FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 octets")
        self._calm(self.guard.window_update())
        increment = F.u31(buf, start)
        if sid == 0:
            if increment == 0:
                self._fail(PROTOCOL_ERROR, "WINDOW_UPDATE of 0 on the connection")
            self.conn_send_window += increment
            if self.conn_send_window > F.MAX_WINDOW:
                self._fail(FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            self._on_window_update(0)
            return
        stream = self.streams.get(sid)
        if stream is None:
            if self._is_idle(sid):
                self._fail(PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
            return
        if increment == 0:
            self._stream_error(stream, PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > F.MAX_WINDOW:
            self._stream_error(stream, FLOW_CONTROL_ERROR)
            return
        self._on_window_update(sid)

    # -- streams ----------------------------------------------------------------------
    def _set_state(self, stream: Stream, state: int) -> None:
        if state == CLOSED:
            self._close(stream)
        else:
            stream.state = state

    def _close(self, stream: Stream) -> None:
        stream.state = CLOSED
        if self.streams.pop(stream.stream_id, None) is not None:
            if stream.inbound:
                self.open_inbound -= 1
            else:
                self.open_outbound -= 1

    def _stream_error(self, stream: Stream, code: int) -> None:
        """RFC 9113 §5.4.2: RST_STREAM, and the caller hears of it."""
        self._close(stream)
        self._control(F.rst_stream(stream.stream_id, code))
        self._on_reset(stream.stream_id, code)

    # -- sending ----------------------------------------------------------------------
    def next_stream_id(self) -> int:
        """The id the next stream this side opens will get."""
        return self._next_outbound

    def send_window(self, stream_id: int) -> int:
        """Octets send_data() may send on the stream now (stream and connection)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return 0
        return min(stream.send_window, self.conn_send_window)

    def send_headers(self, stream_id: int, headers, end_stream: bool = False) -> None:
        """Request (client role, a new stream), response, or trailers (end_stream)."""
        if self.failed is not None:
            raise self.failed
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self._open_stream(stream_id)
        state = TRANSITIONS[stream.state * 8 + SEND_HEADERS]
        if state < 0:
            raise StreamClosed(stream_id, f"stream {stream_id} is closed for sending")
        block = self.encoder.encode(headers)
        self._out.append(F.header_block(stream_id, block, end_stream, self.max_outbound_frame_size))
        self.guard.headers_sent()
        if end_stream:
            state = TRANSITIONS[state * 8 + SEND_END_STREAM]
        self._set_state(stream, state)

    def _open_stream(self, stream_id: int) -> Stream:
        if not self.client or stream_id < self._next_outbound or not stream_id & 1:
            raise StreamClosed(stream_id, f"stream {stream_id} cannot be opened by this side")
        if self.goaway_received is not None or self.goaway_sent is not None:
            raise GoingAway("GOAWAY sent or received: no new streams")
        if self.open_outbound >= self.peer_max_concurrent_streams:
            raise TooManyStreams(f"peer allows {self.peer_max_concurrent_streams} concurrent streams")
        stream = Stream(stream_id, IDLE, self.peer_initial_window, self._stream_window, False, 0.0)
        self.streams[stream_id] = stream
        self.open_outbound += 1
        self.guard.stream_opened(False)
        self._next_outbound = stream_id + 2
        return stream

    def send_data(self, stream_id: int, data, end_stream: bool = False) -> None:
        """DATA frames (split at the peer's MAX_FRAME_SIZE); at most send_window()."""
        if self.failed is not None:
            raise self.failed
        stream = self.streams.get(stream_id)
        state = NOT_ALLOWED if stream is None else TRANSITIONS[stream.state * 8 + SEND_DATA]
        if state < 0:
            raise StreamClosed(stream_id, f"stream {stream_id} is closed for sending")
        n = len(data)
        if n > stream.send_window or n > self.conn_send_window:
            raise FlowControlBlocked(f"{n} octets on stream {stream_id} above its send window")
        stream.send_window -= n
        self.conn_send_window -= n
        self._queue_data(stream_id, data, n, end_stream)
        if end_stream:
            self._set_state(stream, TRANSITIONS[state * 8 + SEND_END_STREAM])

    def _queue_data(self, stream_id: int, data, n: int, end_stream: bool) -> None:
        out = self._out
        size = self.max_outbound_frame_size
        pos = 0
        while n - pos > size:
            out.append(F.data_header(stream_id, size, False))
            out.append(data[pos:pos + size])
            pos += size
            self.guard.data_frames_sent(1)
        out.append(F.data_header(stream_id, n - pos, end_stream))
        if n:
            out.append(data[pos:] if pos else data)
        self.guard.data_frames_sent(1)

    def reset_stream(self, stream_id: int, code: int = CANCEL) -> None:
        """RST_STREAM, unless the stream is already closed (then nothing)."""
        stream = self.streams.get(stream_id)
        if stream is None or self.failed is not None:
            return
        self._close(stream)
        self._out.append(F.rst_stream(stream_id, code))
        self._queued_control += 1

    def acknowledge(self, stream_id: int, n: int) -> None:
        """The caller consumed `n` flow-controlled octets of the stream: give them
        back to the peer (stream and connection windows). WINDOW_UPDATEs go out
        once half a window is owed, or when the peer's window has run dry
        (h2's rule), so small calls cost no WINDOW_UPDATE at all."""
        if n <= 0 or self.failed is not None:
            return
        self.acknowledge_stream(stream_id, n)
        self._credit_connection(n)

    def acknowledge_stream(self, stream_id: int, n: int) -> None:
        """The stream-window half of acknowledge(): a relay that already gave the
        connection window back when it buffered the octets gives the stream's
        back when they are consumed (backpressure stays per stream)."""
        if n <= 0 or self.failed is not None:
            return
        stream = self.streams.get(stream_id)
        if stream is not None and stream.state in _RECEIVING:
            stream.unacked += n
            credit = _credit(stream.unacked, stream.recv_window, self._stream_window)
            if credit:
                stream.unacked -= credit
                stream.recv_window += credit
                self._out.append(F.window_update(stream_id, credit))
                self._queued_control += 1

    def acknowledge_connection(self, n: int) -> None:
        """The connection-window half of acknowledge()."""
        if n > 0 and self.failed is None:
            self._credit_connection(n)

    def peer_settings_received(self) -> bool:
        """The peer's preface (server role) and first SETTINGS frame have arrived."""
        return not self._await_preface and not self._await_settings

    def _credit_connection(self, n: int) -> None:
        self._conn_unacked += n
        credit = _credit(self._conn_unacked, self.conn_recv_window, self._connection_window)
        if credit:
            self._conn_unacked -= credit
            self.conn_recv_window += credit
            self._out.append(F.window_update(0, credit))
            self._queued_control += 1

    def ping(self, payload: bytes = b"\0" * 8) -> None:
        """PING (keepalive, RTT); the peer's ACK comes back as on_ping_ack(payload)."""
        if len(payload) != 8:
            raise ValueError("PING payload must be 8 octets")
        self._out.append(F.ping(payload, ack=False))
        self._queued_control += 1

    def goaway(self, code: int = NO_ERROR, last_stream_id: int | None = None, debug: bytes = b"") -> None:
        """GOAWAY; the connection stays open so streams <= last_stream_id (default:
        the highest the peer opened) can finish; newer ones are refused."""
        last = self.highest_inbound if last_stream_id is None else last_stream_id
        if self.goaway_sent is None or last < self.goaway_sent:
            self.goaway_sent = last
        self._out.append(F.goaway(last, code, debug))
        self._queued_control += 1


_RECEIVING = frozenset({OPEN, HALF_CLOSED_LOCAL})


class _NoHandler:
    """What a detached connection calls: nothing."""

    def _ignore(self, *args) -> None:
        return None

    on_request = on_response = on_trailers = on_data = on_reset = _ignore
    on_window_update = on_settings = on_goaway = on_ping_ack = _ignore


_NO_HANDLER = _NoHandler()


def _credit(unacked: int, window: int, maximum: int) -> int:
    """WINDOW_UPDATE increment owed now (h2's WindowManager rule), or 0."""
    if unacked >= maximum // 2 or (window <= 0 and unacked > min(1024, maximum // 4)):
        return min(unacked, maximum - window)
    return 0


def _informational(headers) -> bool:
    for name, value in headers:
        if name == b":status":
            return value[:1] == b"1"
    return False

