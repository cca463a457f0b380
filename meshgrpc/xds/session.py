"""One discovery stream's life: read requests into the StreamState, send what
ordering.py decides, until the stream ends. Transport-agnostic: it talks to a
`StreamIO` (read one request / write one encoded response), so unit tests drive
it through a fake stream and server.py adapts grpc.aio to it. The stream's
`DiscoveryProtocol` (protocol.py) says which flavour of discovery it is: meshgrpc's own
or Envoy's ADS for proxyless gRPC clients.

Tasks: the session's `run()` is the sender loop; it owns one reader task and
cancels and awaits it when the stream ends, however it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
from google.protobuf import timestamp_pb2

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.xds import wire
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.ordering import ResponsePlan, next_response
from meshgrpc.xds.protocol import MESH, DiscoveryProtocol
from meshgrpc.xds.snapshot import Snapshot
from meshgrpc.xds.stream_state import Outcome, StreamState, UnknownTypeError


class StreamIO(Protocol):
    async def read(self) -> discovery_pb2.DiscoveryRequest | None:
        """The next request (of the protocol's request class), or None when the
        proxy closed its side."""

    async def write(self, data: bytes) -> None:
        """Sends one serialized DiscoveryResponse."""


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
                 protocol: DiscoveryProtocol = MESH,
                 on_sent: Callable[[Session, ResponsePlan], None] | None = None) -> None:
        self.io, self.cache, self.bodies = io, cache, bodies
        self.peer, self.connected_since = peer, connected_since
        self.protocol = protocol
        self._on_sent = on_sent  # told of each response once the transport took it
        self.node = None  # the protocol's Node message, from the first request
        self.state = StreamState(protocol.type_urls, empty_is_wildcard=protocol.empty_is_wildcard,
                                 resume=protocol.resume)
        self.idle_timeout, self.io_timeout = idle_timeout, io_timeout
        self._wake = asyncio.Event()

    async def run(self, on_accepted: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serves the stream until the proxy closes it; raises StreamError to end
        it with a status (and whatever the transport raised when it failed).
        `on_accepted` is awaited once the first request is valid (the server sends
        its initial metadata then, so a resuming proxy that is sent nothing still
        learns that it is connected)."""
        first = await self._first_request()
        self.node = first.node
        self._apply(first)
        if on_accepted is not None:
            await on_accepted()
        remove_listener = self.cache.add_listener(self._wake.set)
        reader = asyncio.create_task(self._read_loop(), name=f"xds-reader {self.node.id}")
        try:
            await self._send_loop(reader)
        finally:
            remove_listener()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _first_request(self) -> discovery_pb2.DiscoveryRequest:
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
            while (request := await self.io.read()) is not None:
                self._apply(request)
        finally:
            self._wake.set()

    def _apply(self, request: discovery_pb2.DiscoveryRequest) -> None:
        try:
            outcome = self.state.on_request(request)
        except UnknownTypeError as e:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        if outcome is not Outcome.STALE:
            self._wake.set()

    async def _send_loop(self, reader: asyncio.Task) -> None:
        while True:
            self._wake.clear()
            if reader.done():
                reader.result()  # re-raises what ended the reader
                return
            snapshot = self.cache.current
            plan = next_response(self.state.types, snapshot, self.protocol.layout)
            if plan is None:
                await self._idle()
            else:
                await self._send(plan, snapshot)

    async def _idle(self) -> None:
        # Bounded: the loop re-checks its state at least every idle_timeout.
        try:
            async with asyncio.timeout(self.idle_timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _send(self, plan: ResponsePlan, snapshot: Snapshot) -> None:
        nonce = self.state.next_nonce()
        # Record before the write: the ACK may be read while the write awaits.
        self.state.types[plan.type_url].record_sent(plan.version, nonce, plan.names, plan.resources, plan.refs)
        data = self._body(plan, snapshot) + self.protocol.response.nonce_field(nonce)
        try:
            async with asyncio.timeout(self.io_timeout):
                await self.io.write(data)
        except TimeoutError:
            raise StreamError(grpc.StatusCode.UNAVAILABLE,
                              f"proxy did not take a response within {self.io_timeout:g}s") from None
        if self._on_sent is not None:
            self._on_sent(self, plan)

    def _body(self, plan: ResponsePlan, snapshot: Snapshot) -> bytes:
        if plan.body_key is None:
            return snapshot[plan.type_url].body
        return self.bodies.get(plan.body_key, lambda: self.protocol.response.body(
            plan.type_url, plan.version, [r.any_bytes for r in plan.resources.values()]))

    def status(self, current_versions: dict[str, str]) -> management_pb2.ProxyStatus:
        node = self.protocol.node_info(self.node or self.protocol.request_class().node)
        since = timestamp_pb2.Timestamp()
        since.FromNanoseconds(int(self.connected_since * 1e9))
        return management_pb2.ProxyStatus(node_id=node.id, zone=node.zone, peer=self.peer, client=node.client,
                                          connected_since=since, types=self.state.statuses(current_versions))
