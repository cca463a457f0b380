"""The response direction of a relayed call: DATA, then END_STREAM or trailers,
moved from the winning attempt's upstream stream to the downstream stream as fast
as the downstream's flow-control window allows. The request direction is
attempt.py's RequestBody.

Backpressure stays per stream: bytes are acknowledged on the upstream *stream*'s
window only as the downstream takes them, so a slow reader's stream stops at its
window. The upstream *connection*'s window is shared by every client's calls on
it: bytes left buffered are acknowledged there at once, within the connection's
eager budget (UpstreamConnection.buffer_eagerly), so one slow reader does not stop
everyone else's responses. What stays buffered is copied out of the codec's
receive buffer (a memoryview would pin the whole read) and counted against the
client's connection (DownstreamConnection.buffered).
"""

from __future__ import annotations

import collections


class Pipe:
    """DATA (then END_STREAM or trailers) from the source stream to the
    destination stream, sent only as the destination's window allows.

    `owed` counts bytes received and not yet acknowledged on the source stream's
    window; `owed_conn` those not yet acknowledged on its connection's window;
    `eager` those acknowledged on the connection early and not yet relayed."""

    __slots__ = ("call", "src", "src_sid", "dst", "dst_sid", "chunks", "buffered",
                 "owed", "owed_conn", "eager", "end", "trailers", "done")
    # call: told `pipe_done(pipe)` once END_STREAM or the trailers went out.

    def __init__(self, call, src, src_sid, dst, dst_sid) -> None:
        self.call = call
        self.src, self.src_sid = src, src_sid
        self.dst, self.dst_sid = dst, dst_sid
        self.chunks: collections.deque = collections.deque()
        self.buffered = 0
        self.owed = self.owed_conn = self.eager = 0
        self.end = False
        self.trailers = None
        self.done = False

    def push(self, data, flow_len: int, end: bool) -> None:
        n = len(data)
        padding = flow_len - n
        if padding and self.src is not None:
            self.src.ack(self.src_sid, padding)  # padding is never forwarded
        if n:
            self.chunks.append(data)
            self.buffered += n
            self.owed += n
            self.owed_conn += n
            self.dst.buffered += n
            self.call.bytes_out += n
        if end:
            self.end = True
        self.pump()
        if self.chunks:
            self._keep()

    def finish_with(self, trailers) -> None:
        self.trailers = trailers
        self.end = True
        self.pump()

    def pump(self) -> None:
        """Send what the destination window allows; END_STREAM/trailers once drained."""
        dst = self.dst
        if self.done or dst is None:
            return
        h2, sid, chunks = dst.h2, self.dst_sid, self.chunks
        sent = 0
        while chunks:
            window = h2.send_window(sid)
            if window <= 0:
                break
            limit = min(window, h2.max_outbound_frame_size)
            chunk = chunks[0]
            if len(chunk) > limit:
                h2.send_data(sid, chunk[:limit])
                chunks[0] = chunk[limit:]
                sent += limit
                continue
            chunks.popleft()
            sent += len(chunk)
            last = not chunks and self.end and self.trailers is None
            h2.send_data(sid, chunk, end_stream=last)
            if last:
                self.done = True
        if sent:
            self.buffered -= sent
            dst.buffered -= sent
            dst.touch()
            self._relayed(sent)
        if chunks:
            dst.blocked.add(self)
            return
        dst.blocked.discard(self)
        if not self.done and self.end:
            if self.trailers is not None:
                h2.send_headers(sid, self.trailers, end_stream=True)
            else:
                h2.send_data(sid, b"", end_stream=True)
            self.done = True
            dst.touch()
        if self.done:
            self.call.pipe_done(self)

    def _keep(self) -> None:
        """Bytes stay buffered: own them, and free the shared connection window."""
        dst = self.dst
        if dst.buffered > dst.listener.limits.buffer_budget:
            dst.over_budget()
        chunks = self.chunks
        for i, chunk in enumerate(chunks):
            if type(chunk) is memoryview:
                chunks[i] = chunk.tobytes()
        src = self.src
        if src is not None and self.owed_conn:
            early = src.buffer_eagerly(min(self.owed_conn, self.buffered - self.eager))
            if early:
                self.owed_conn -= early
                self.eager += early
                src.ack_connection(early)

    def _relayed(self, n: int) -> None:
        """`n` bytes went downstream: give them back to the source."""
        src = self.src
        stream_part = min(n, self.owed)
        self.owed -= stream_part
        early = min(n, self.eager)
        self.eager -= early
        conn_part = min(n - early, self.owed_conn)
        self.owed_conn -= conn_part
        if src is None:
            return
        if early:
            src.relayed(early)
        if stream_part:
            src.ack_stream(self.src_sid, stream_part)
        if conn_part:
            src.ack_connection(conn_part)

    def drop(self) -> None:
        """Stop for good: forget buffered bytes and hand their window back."""
        self.done = True
        self.chunks.clear()
        if self.dst is not None:
            self.dst.buffered -= self.buffered
            self.dst.blocked.discard(self)
        self.buffered = 0
        src = self.src
        if src is not None:
            if self.eager:
                src.relayed(self.eager)
            src.ack_stream(self.src_sid, self.owed)
            src.ack_connection(self.owed_conn)
        self.owed = self.owed_conn = self.eager = 0
