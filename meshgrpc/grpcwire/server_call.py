"""One call a Server (server.py) received: the server side of one HTTP/2 stream,
and the `context` its handler is given, with the grpc.aio ServicerContext
methods meshgrpc's servicers use (read, write, abort, send_initial_metadata,
invocation_metadata, peer, auth_context, set_code/set_details/
set_trailing_metadata, time_remaining, cancelled, done). Handlers are grpcio's
RpcMethodHandlers, written for grpc.aio, so one servicer serves on either.

The call runs as one task (`run`), which the call's end cancels: the client's
RST_STREAM, its deadline (grpc-timeout: DEADLINE_EXCEEDED is sent), the
connection lost, or the server stopping. A handler's uncaught exception ends the
call UNKNOWN, as grpc.aio does; `abort` raises grpc.aio.AbortError, which ends it
with the code given. Request messages: inbox.py (flow control, bounded); a
handler that stops reading stops the client, not the server's memory.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import DecodeError

from meshgrpc.codec.errors import CANCEL, NO_ERROR
from meshgrpc.grpcwire import flow, framing, status as st
from meshgrpc.grpcwire.inbox import Inbox
from meshgrpc.grpcwire.metadata import encode_metadata
from meshgrpc.grpcwire.status import RpcError
from meshgrpc.proxy.grpc_status import encode_message
from meshgrpc.wakeup import Wakeup

if TYPE_CHECKING:
    from meshgrpc.grpcwire.server import ServerConnection

log = logging.getLogger(__name__)

RESPONSE_HEADERS = ((b":status", b"200"), (b"content-type", b"application/grpc"))
_EOF = grpc.aio.EOF


class ServerCall:
    """Made by ServerConnection for each request stream; `run(handler)` serves it."""

    __slots__ = ("link", "stream_id", "method", "metadata", "_deadline", "_inbox", "_readable", "_writable",
                 "_request_ended", "_headers_sent", "_ended", "_code", "_details", "_trailing", "_task",
                 "_timer", "_why_cancelled", "_deserialize", "_serialize", "io_timeout")

    def __init__(self, link: ServerConnection, stream_id: int, method: str, metadata: tuple, *,
                 timeout: float | None, max_message_bytes: int, queue_limit: int, io_timeout: float) -> None:
        self.link, self.stream_id, self.method, self.metadata = link, stream_id, method, metadata
        self.io_timeout = io_timeout
        self._inbox = Inbox(max_message_bytes, queue_limit)
        self._readable, self._writable = Wakeup(), Wakeup()
        self._request_ended = False
        self._headers_sent = False
        self._ended = False           # trailers or a reset went out (or the stream is gone)
        self._code, self._details, self._trailing = st.OK, "", ()
        self._task: asyncio.Task | None = None
        self._why_cancelled: tuple[int, str] | None = None
        self._deserialize = self._serialize = None
        loop = asyncio.get_running_loop()
        self._deadline = None if timeout is None else loop.time() + timeout
        self._timer = None if timeout is None else loop.call_later(timeout, self._expire)

    # -- serving ----------------------------------------------------------------------
    @property
    def task(self) -> asyncio.Task | None:
        return self._task

    def start(self, resolve) -> None:
        """Starts the call's task: `resolve(method, metadata)` finds its handler."""
        self._task = asyncio.get_running_loop().create_task(self._serve(resolve), name=self.method)
        self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        # A task cancelled before its first step never runs _serve's handlers;
        # one cancelled from outside the call passes the cancel on. Either way
        # the stream must still end.
        if self._ended:
            return
        if self._why_cancelled is not None:
            self._code, self._details = self._why_cancelled
            self._send_status()
        else:
            self._end(reset=CANCEL)

    async def _serve(self, resolve) -> None:
        try:
            handler = await resolve(self.method, self.metadata)
            if handler is None:
                self._code, self._details = st.UNIMPLEMENTED, f"Method not found: {self.method}"
            else:
                await self._run(handler)
        except grpc.aio.AbortError:
            pass   # abort() set the status
        except asyncio.CancelledError:
            if self._why_cancelled is None:
                raise   # cancelled by someone else: pass it on (_task_done ends the stream)
            self._code, self._details = self._why_cancelled
        except Exception as e:   # noqa: BLE001 - a handler's bug ends its call, as grpc.aio does
            log.exception("%s: the handler failed", self.method)
            self._code, self._details = st.UNKNOWN, f"Unexpected {type(e).__name__}: {e}"
        if self._why_cancelled is not None and self._code == st.OK:
            self._code, self._details = self._why_cancelled   # a handler that swallowed its cancel
        self._send_status()

    async def _run(self, handler) -> None:
        self._deserialize, self._serialize = handler.request_deserializer, handler.response_serializer
        request = self if handler.request_streaming else await self._only_request()
        if handler.response_streaming:
            behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream
            result = behavior(request, self)
            if inspect.isasyncgen(result):
                async for response in result:
                    await self.write(response)
            elif inspect.isawaitable(result):
                await result
            return
        behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary
        response = behavior(request, self)
        if inspect.isawaitable(response):
            response = await response
        if response is not None and self._code == st.OK:
            await self.write(response)

    async def _only_request(self):
        request = await self.read()
        if request is _EOF:
            await self.abort(grpc.StatusCode.INTERNAL, "the request carried no message")
        while not self._request_ended and not self._inbox:
            await self._wait(self._readable)
        if self._inbox:
            await self.abort(grpc.StatusCode.UNIMPLEMENTED, "a unary method received more than one request message")
        return request

    # -- the context: reading and writing ---------------------------------------------
    async def read(self):
        """The next request message, or grpc.aio.EOF once the client half-closed."""
        while not self._inbox:
            if self._request_ended:
                return _EOF
            await self._wait(self._readable)
        payload, credit = self._inbox.take()
        if credit:
            self.link.acknowledge(self.stream_id, credit)
        if self._deserialize is None:
            return payload
        try:
            return self._deserialize(payload)
        except (DecodeError, ValueError) as e:
            await self.abort(grpc.StatusCode.INTERNAL, f"cannot decode the request message: {e}")

    def __aiter__(self):
        return self

    async def __anext__(self):
        message = await self.read()
        if message is _EOF:
            raise StopAsyncIteration
        return message

    async def write(self, message) -> None:
        """Sends one response message (a protobuf, or bytes its serializer passes)."""
        if self._ended:
            raise RpcError(st.CANCELLED, f"{self.method}: the call has ended")
        payload = message if self._serialize is None else self._serialize(message)
        try:
            data = framing.encode(payload, self.link.max_message_bytes)
        except RpcError as e:
            await self.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, e.message)
        self._send_headers()
        await flow.send_data(self.link, self, data, False)

    async def send_initial_metadata(self, metadata=()) -> None:
        """The response headers, with `metadata`, now instead of with the first message."""
        if self._headers_sent:
            raise RuntimeError(f"{self.method}: the response headers were sent already")
        self._send_headers(metadata)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        """Ends the call with `code` and `details`: raises grpc.aio.AbortError."""
        self._code, self._details, self._trailing = code.value[0], details, tuple(trailing_metadata)
        raise grpc.aio.AbortError()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code.value[0]

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, metadata) -> None:
        self._trailing = tuple(metadata)

    # -- the context: what the call is ------------------------------------------------
    def invocation_metadata(self) -> tuple:
        """The client's custom metadata: (key, value) pairs, values of -bin keys as bytes."""
        return self.metadata

    def peer(self) -> str:
        return self.link.peer

    def auth_context(self) -> dict:
        return self.link.auth_context

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - asyncio.get_running_loop().time())

    def cancelled(self) -> bool:
        return self._why_cancelled is not None and self._why_cancelled[0] == st.CANCELLED

    def done(self) -> bool:
        return self._ended

    @property
    def queued(self) -> int:
        """Bytes of request messages received and not yet read by the handler."""
        return self._inbox.queued

    # -- the connection's side ----------------------------------------------------------
    def on_data(self, data, flow_len: int, end_stream: bool) -> None:
        try:
            credit = self._inbox.feed(data, flow_len)
        except RpcError as e:
            self.link.acknowledge(self.stream_id, flow_len)
            self.cancel(e.code, e.message)
            return
        if credit:
            self.link.acknowledge(self.stream_id, credit)
        if end_stream:
            self._request_ended = True
        if self._inbox or end_stream:
            self._readable.set()

    def on_request_end(self) -> None:
        """The client half-closed (END_STREAM, or trailers)."""
        self._request_ended = True
        self._readable.set()

    def on_reset(self, code: int) -> None:
        """The client reset the stream: nothing more is sent on it."""
        self._ended = True
        self.cancel(st.CANCELLED, "the client cancelled the call")

    def on_window(self) -> None:
        self._writable.set()

    def cancel(self, code: int, details: str) -> None:
        """Ends the call from outside its handler: `code` is sent unless the stream is gone."""
        if self._why_cancelled is not None or self._task is None or self._task.done():
            return
        self._why_cancelled = (code, details)
        self._task.cancel()

    def _expire(self) -> None:
        self._timer = None
        self.cancel(st.DEADLINE_EXCEEDED, "Deadline Exceeded")

    # -- internals --------------------------------------------------------------------
    async def wait_writable(self) -> bool:
        """Until more send window, at most io_timeout; False once the call ended."""
        if self._ended:
            return False
        try:
            async with asyncio.timeout(self.io_timeout):
                await self._wait(self._writable)
        except TimeoutError:
            await self.abort(grpc.StatusCode.UNAVAILABLE, f"the client took no data for {self.io_timeout:g}s")
        return not self._ended

    @staticmethod
    async def _wait(event: Wakeup) -> None:
        event.clear()
        await event.wait()

    def _send_headers(self, metadata=()) -> None:
        if not self._headers_sent:
            self._headers_sent = True
            self.link.send_headers(self.stream_id, [*RESPONSE_HEADERS, *_metadata_fields(metadata)], False)

    def _send_status(self) -> None:
        if self._ended:
            self._end(reset=None)
            return
        fields = [(b"grpc-status", b"%d" % self._code)]
        if self._details:
            fields.append((b"grpc-message", encode_message(self._details)))
        fields += _metadata_fields(self._trailing)
        if not self._headers_sent:
            self._headers_sent = True
            fields = [*RESPONSE_HEADERS, *fields]   # trailers-only
        self.link.send_headers(self.stream_id, fields, True)
        # RFC 9113 §8.1: a response complete before its request may stop the
        # request with RST_STREAM NO_ERROR (grpc-core does the same).
        self._end(reset=None if self._request_ended else NO_ERROR)

    def _end(self, reset: int | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        already = self._ended
        self._ended = True
        self._inbox.clear()
        self.link.release(self, None if already else reset, self._inbox.settle())
        self._writable.set()

    def __repr__(self) -> str:
        return f"<ServerCall {self.method} stream={self.stream_id} ended={self._ended}>"


def _metadata_fields(metadata) -> list[tuple[bytes, bytes]]:
    return encode_metadata(metadata) if metadata else []
