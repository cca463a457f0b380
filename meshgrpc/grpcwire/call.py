"""One gRPC call on a Channel: the client side of one HTTP/2 stream, unary or
streaming alike.

Contract: one task sends and one task receives at a time (they may be two
tasks). Every wait ends: at the call's deadline (DEADLINE_EXCEEDED, the stream
is reset), when the connection is lost (UNAVAILABLE; keepalive bounds how long
that takes to notice), after `io_timeout` of a send the server's flow control
keeps blocked, or at a `timeout` given to that one wait (TimeoutError; the call
goes on).

Flow control: inbox.py (at most `queue_limit` bytes of messages not yet taken
by recv(), plus one message and one stream window).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError, Message

from meshgrpc.codec.errors import CANCEL, NO_ERROR
from meshgrpc.grpcwire import flow, framing, status as st
from meshgrpc.grpcwire.inbox import Inbox
from meshgrpc.grpcwire.status import RpcError, Status

if TYPE_CHECKING:
    from meshgrpc.grpcwire.channel import Channel


class Call:
    """Made by Channel.open_call(); the channel feeds it the stream's events."""

    def __init__(self, channel: Channel, stream_id: int, method: str, response_class: type[Message] | None, *,
                 timeout: float | None, max_message_bytes: int, io_timeout: float, queue_limit: int) -> None:
        self.channel, self.stream_id, self.method = channel, stream_id, method
        self.response_class = response_class
        self.max_message_bytes, self.io_timeout, self.queue_limit = max_message_bytes, io_timeout, queue_limit
        self.headers: list | None = None    # the response headers, once received
        self.trailers: list | None = None
        self.status: Status | None = None   # set once, when the call ends
        self._inbox = Inbox(max_message_bytes, queue_limit)
        self._sent_end = False
        self._readable, self._writable = asyncio.Event(), asyncio.Event()
        self._timer = None
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(timeout, self._expire, timeout)

    # -- the caller's side ----------------------------------------------------------
    async def send(self, message: Message | bytes, *, end: bool = False) -> None:
        """Sends one message, a protobuf or its encoding (`end`: and half-closes).
        After the call ended OK it sends nothing (the server is done; recv() reports
        the end); after it failed it raises the call's error."""
        if self._sent_end:
            raise RuntimeError(f"{self.method}: send after the request was closed")
        if self._ended():
            return
        try:
            payload = message if isinstance(message, bytes) else message.SerializeToString()
            data = framing.encode(payload, self.max_message_bytes)
        except RpcError as e:
            self._abort(e)
            raise
        self._sent_end = end
        await flow.send_data(self.channel, self, data, end)

    async def done_sending(self) -> None:
        """Half-closes the request (END_STREAM): no more messages from this side."""
        if not self._sent_end and not self._ended():
            self._sent_end = True
            await flow.send_data(self.channel, self, b"", True)

    async def recv(self, timeout: float | None = None) -> Message | bytes | None:
        """The next response message (its bytes when the call's response_class is
        None: the caller decodes); None once the call ended OK; raises RpcError
        once it failed (after the messages received before the failure)."""
        while not self._inbox:
            if self.status is not None:
                if self.status.ok:
                    return None
                raise self.status.error()
            await self._wait(self._readable, timeout)
        payload, credit = self._inbox.take()
        if credit:
            self.channel.acknowledge(self.stream_id, credit)
        if self.response_class is None:
            return bytes(payload)
        try:
            return self.response_class.FromString(payload)
        except DecodeError as e:
            error = RpcError(st.INTERNAL, f"cannot decode a {self.response_class.__name__}: {e}")
            self._abort(error)
            raise error from None

    async def response_headers(self, timeout: float | None = None) -> list:
        """Waits for the response headers (the server accepted the call) and returns
        them; raises the call's error if it failed before sending any (a
        trailers-only response carries no headers, only its status)."""
        while self.headers is None and self.status is None:
            await self._wait(self._readable, timeout)
        if self.headers is None and not self.status.ok:
            raise self.status.error()
        return self.headers or []

    def cancel(self, message: str = "cancelled by the caller") -> None:
        """Ends the call (CANCELLED) and resets its stream, unless it has ended."""
        self._abort(RpcError(st.CANCELLED, message))

    @property
    def done(self) -> bool:
        return self.status is not None

    @property
    def queued(self) -> int:
        """Bytes of response messages received and not yet taken by recv()."""
        return self._inbox.queued

    # -- the channel's side ---------------------------------------------------------
    def on_response(self, headers, end_stream: bool) -> None:
        problem = st.response_problem(headers, end_stream)
        if problem is not None:
            self._finish(problem, reset=CANCEL)
            return
        if end_stream:    # trailers-only: these headers are the trailers
            self.on_trailers(headers)
            return
        self.headers = list(headers)
        self._readable.set()

    def on_data(self, data, flow_len: int, end_stream: bool) -> None:
        try:
            credit = self._inbox.feed(data, flow_len)
        except RpcError as e:
            self.channel.acknowledge(self.stream_id, flow_len)
            self._abort(e)
            return
        if credit:
            self.channel.acknowledge(self.stream_id, credit)
        if self._inbox:
            self._readable.set()
        if end_stream:
            self._finish(Status(st.INTERNAL, "the server ended the stream without trailers"), reset=None)

    def on_trailers(self, headers) -> None:
        self.trailers = list(headers)
        self._finish(st.from_trailers(headers), reset=NO_ERROR)

    def on_reset(self, code: int) -> None:
        self._finish(st.from_reset(code), reset=None)

    def on_window(self) -> None:
        self._writable.set()

    def fail(self, status: Status) -> None:
        """The connection cannot carry the call any more (lost, GOAWAY, closed)."""
        self._finish(status, reset=CANCEL)

    # -- internals --------------------------------------------------------------------
    def _ended(self) -> bool:
        """True once the call ended OK; raises its error once it failed."""
        if self.status is not None and not self.status.ok:
            raise self.status.error()
        return self.status is not None

    async def wait_writable(self) -> bool:
        """Until more send window (or room in the transport's buffer), at most
        io_timeout; False if the call ended OK meanwhile, its error if it failed."""
        try:
            await self._wait(self._writable, self.io_timeout)
        except TimeoutError:
            error = RpcError(st.UNAVAILABLE, f"the server took no data for {self.io_timeout:g}s")
            self._abort(error)
            raise error from None
        return not self._ended()

    async def _wait(self, event: asyncio.Event, timeout: float | None) -> None:
        event.clear()
        if timeout is None:
            await event.wait()
            return
        async with asyncio.timeout(timeout):
            await event.wait()

    def _expire(self, timeout: float) -> None:
        self._timer = None
        self._abort(RpcError(st.DEADLINE_EXCEEDED, f"deadline of {timeout:g}s exceeded"))

    def _abort(self, error: RpcError) -> None:
        """Ended by this side: what was received and not taken is dropped."""
        if self.status is None:
            self._inbox.clear()
            self._finish(Status(error.code, error.message), reset=CANCEL)

    def _finish(self, status: Status, reset: int | None) -> None:
        if self.status is not None:
            return
        self.status = status
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.channel.release(self, reset, self._inbox.settle())   # the connection window must not leak
        self._readable.set()
        self._writable.set()

    def __repr__(self) -> str:
        state = "open" if self.status is None else self.status.name
        return (f"<Call {self.method} stream={self.stream_id} {state} queued={len(self._inbox)} "
                f"owed={self._inbox.owed}>")
