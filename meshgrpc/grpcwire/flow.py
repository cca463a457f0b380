"""Sending a call's bytes as HTTP/2 flow control allows, for both ends of a call
(channel.py, server.py). `link` is the connection: its codec `conn`, an Event
`writable` (the transport's buffer is below its high-water mark) and `flush()`;
`call` has `stream_id` and `wait_writable()`, which waits (bounded) for more
window and says False once the call has ended."""

from __future__ import annotations


async def send_data(link, call, data: bytes, end: bool) -> None:
    """Sends `data` on the call's stream (and END_STREAM when `end`) as the windows allow."""
    view = memoryview(data)
    conn = link.conn
    while True:
        if not link.writable.is_set():
            if not await call.wait_writable():
                return
            continue
        n = min(len(view), conn.send_window(call.stream_id))
        if n or not view:
            conn.send_data(call.stream_id, view[:n], end_stream=end and n == len(view))
            link.flush()
            view = view[n:]
            if not view:
                return
        if not await call.wait_writable():
            return
