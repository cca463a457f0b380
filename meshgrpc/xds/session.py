"""One discovery stream's life: read requests into the variant's state (state of
the world or delta, variants.py), send what it decides, until the stream ends.
Transport-agnostic: it talks to a `StreamIO` (read one request / write one
encoded response), so unit tests drive it through a fake stream and server.py
adapts grpc.aio to it. The variant's `DiscoveryProtocol` (protocol.py) says which
flavour of discovery it is: meshgrpc's own, or Envoy's ADS for proxyless gRPC
clients (state of the world only).

Tasks: the session's `run()` is the sender loop; it owns one reader task and
cancels and awaits it when the stream ends, however it ends.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
from google.protobuf import timestamp_pb2

from meshapi.v1 import management_pb2
from meshgrpc.wakeup import Wakeup
from meshgrpc.xds import wire
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.protocol import MESH, DiscoveryProtocol
from meshgrpc.xds.stream_state import UnknownTypeError
from meshgrpc.xds.variants import Sotw, Variant


class StreamIO(Protocol):
    async def read(self):
        """The next request, or None when the proxy closed its side."""

    async def write(self, data: bytes) -> None:
        """Sends one serialized response."""


class StreamError(Exception):
    """Ends the stream with this gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Session:
    """State and loops of one stream. `node`/`peer`/`connected_since` describe it
    for status once `run()` has read the first request."""

    def __init__(self, io: StreamIO, cache: SnapshotCache, bodies: wire.BodyCache, *, peer: str = "",
                 connected_since: float = 0.0, idle_timeout: float = 30.0, io_timeout: float = 30.0,
                 variant: Variant | None = None, protocol: DiscoveryProtocol = MESH,
                 sent: collections.Counter | None = None, on_sent: Callable | None = None,
                 admit: Callable[[str], Callable[[], None]] | None = None,
                 view: Callable | None = None, on_answer: Callable | None = None) -> None:
        """`admit(node_id)` takes the node id for this stream's identity, returning
        its release, or raises StreamError; `view(snapshot)` is what of a snapshot
        this stream may see (scope.py; default: all of it)."""
        self.io, self.cache, self.bodies = io, cache, bodies
        self._admit = admit
        self._view = view
        self.peer, self.connected_since = peer, connected_since
        self.node = None  # the protocol's Node message, from the first request
        self.variant = variant or Sotw(protocol)
        self._on_sent = on_sent  # told (session, plan, size in bytes) of each response the transport took
        self._on_answer = on_answer  # told (session, type_url, "ack" | "nack") of each answer to a response
        # Resources sent per type URL, counted into a counter the server shares
        # between its streams (one per stream would cost each stream a dict).
        self.sent = sent if sent is not None else collections.Counter()
        self.idle_timeout, self.io_timeout = idle_timeout, io_timeout
        self._wake = Wakeup()   # the send loop's only: a new snapshot, a request applied, the reader ended

    async def run(self, on_accepted: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serves the stream until the proxy closes it; raises StreamError to end
        it with a status (and whatever the transport raised when it failed).
        `on_accepted` is awaited once the first request is valid (the server sends
        its initial metadata then, so a resuming proxy that is sent nothing still
        learns that it is connected)."""
        first = await self._first_request()
        release = self._admit(first.node.id) if self._admit is not None else (lambda: None)
        try:
            self.node = first.node
            self._apply(first)
            if on_accepted is not None:
                await on_accepted()
            remove_listener = self.cache.add_listener(self._wake.set)
            reader = asyncio.create_task(self._read_loop(), name="xds-reader")
            try:
                await self._send_loop(reader)
            finally:
                remove_listener()
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            release()

    def current(self):
        """The snapshot this stream serves from: the cache's, as the stream may see it."""
        snapshot = self.cache.current
        return snapshot if self._view is None else self._view(snapshot)

    async def _first_request(self):
        try:
            async with asyncio.timeout(self.io_timeout):
                first = await self.io.read()
        except TimeoutError:
            raise StreamError(grpc.StatusCode.DEADLINE_EXCEEDED, "no request within "
                              f"{self.io_timeout:g}s of opening the stream") from None
        if first is None or not first.node.id:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry node.id")
        return first

    async def _read_loop(self) -> None:
        # Ends when the proxy half-closes (None) or raises; the sender loop sees it done.
        try:
            while True:
                request = await self.io.read()
                if request is None:
                    return
                self._apply(request)
                del request   # not held while the next read waits
        finally:
            self._wake.set()

    def _apply(self, request) -> None:
        try:
            outcome = self.variant.on_request(request)
        except UnknownTypeError as e:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        if outcome == "stale":
            return
        self._wake.set()
        if self._on_answer is not None and outcome in ("ack", "nack"):
            self._on_answer(self, request.type_url, outcome)

    async def _send_loop(self, reader: asyncio.Task) -> None:
        while True:
            self._wake.clear()
            if reader.done():
                reader.result()  # re-raises what ended the reader
                return
            if not await self._send_next():
                await self._idle()

    async def _send_next(self) -> bool:
        """Sends the next response, if one is due (False when none is). Its own
        frame, so that nothing of it (the response's bytes, its plan) stays
        alive while the loop waits idle: thousands of idle streams each holding
        their last response would double the control plane's memory per stream."""
        snapshot = self.current()
        plan = self.variant.next_plan(snapshot)
        if plan is None:
            return False
        data = self.variant.encode(plan, snapshot, self.bodies)
        await self._send(data)
        self.sent[plan.type_url] += plan.resource_count
        if self._on_sent is not None:
            self._on_sent(self, plan, len(data))
        return True

    async def _idle(self) -> None:
        # Bounded: the loop re-checks its state at least every idle_timeout.
        try:
            async with asyncio.timeout(self.idle_timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _send(self, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.io_timeout):
                await self.io.write(data)
        except TimeoutError:
            raise StreamError(grpc.StatusCode.UNAVAILABLE,
                              f"proxy did not take a response within {self.io_timeout:g}s") from None

    @property
    def state(self):
        """The variant's per-stream state (StreamState or DeltaStreamState)."""
        return self.variant.state

    def in_sync(self) -> bool:
        """True when the node has ACKed everything the current snapshot holds for it
        (every type SYNCED, or NOT_SENT: nothing of it was ever sent)."""
        return self.variant.in_sync(self.cache.current)

    def status(self) -> management_pb2.ProxyStatus:
        protocol = self.variant.protocol
        node = protocol.node_info(self.node or protocol.request_class().node)
        since = timestamp_pb2.Timestamp()
        since.FromNanoseconds(int(self.connected_since * 1e9))
        return management_pb2.ProxyStatus(node_id=node.id, zone=node.zone, peer=self.peer, client=node.client,
                                          connected_since=since, types=self.variant.statuses(self.current()))
