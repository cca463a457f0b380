"""The response direction of a relayed call: DATA, then END_STREAM or trailers,
moved from the winning attempt's upstream stream to the downstream stream as fast
as the downstream's flow-control window allows, and acknowledged upstream only as
the downstream takes it (end-to-end backpressure: at most one stream window is
buffered). The request direction is attempt.py's RequestBody."""

from __future__ import annotations

import collections


class Pipe:
    """One direction of a call: DATA (then END_STREAM or trailers) from the source
    stream to the destination stream, sent only as the destination's window allows.

    `owed` counts bytes received from the source and not yet acknowledged to it;
    they are acknowledged as the destination takes them (or dropped on finish).
    """

    __slots__ = ("call", "src", "src_sid", "dst", "dst_sid", "chunks", "buffered",
                 "owed", "end", "trailers", "done")
    # call: told `pipe_done(pipe)` once END_STREAM or the trailers went out.

    def __init__(self, call, src, src_sid, dst, dst_sid) -> None:
        self.call = call
        self.src, self.src_sid = src, src_sid
        self.dst, self.dst_sid = dst, dst_sid
        self.chunks: collections.deque = collections.deque()
        self.buffered = 0
        self.owed = 0
        self.end = False
        self.trailers = None
        self.done = False

    def push(self, data: bytes, flow_len: int, end: bool) -> None:
        padding = flow_len - len(data)
        if padding and self.src is not None:
            self.src.ack(self.src_sid, padding)  # padding is never forwarded
        if data:
            self.chunks.append(data)
            self.buffered += len(data)
            self.owed += len(data)
        if end:
            self.end = True
        self.pump()

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
            window = h2.local_flow_control_window(sid)
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
            dst.touch()
            self._ack(sent)
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

    def _ack(self, n: int) -> None:
        n = min(n, self.owed)
        if n:
            self.owed -= n
            if self.src is not None:
                self.src.ack(self.src_sid, n)

    def drop(self) -> None:
        """Stop for good: forget buffered bytes and hand their window back."""
        self.done = True
        self.chunks.clear()
        self.buffered = 0
        if self.dst is not None:
            self.dst.blocked.discard(self)
        self._ack(self.owed)
