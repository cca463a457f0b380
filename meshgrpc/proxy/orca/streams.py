"""The seam the proxy's load-report clients speak through: open a server-streaming
gRPC call to an endpoint, read its messages, cancel it. The OOB subscription and
PREQUAL's probes are written against `StreamOpener`; the proxy runs them on its
own gRPC client (`WireStreams`, meshgrpc.grpcwire: no grpcio in the proxy), unit
tests on a fake stream. Messages are bytes both ways; the callers parse. A stream
that ends otherwise than OK raises grpcwire's RpcError (`RpcFailed` here).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from meshgrpc.grpcwire import Channel, Dialer, RpcError
from meshgrpc.grpcwire.status import CANCELLED, UNAVAILABLE, UNIMPLEMENTED

log = logging.getLogger(__name__)

RpcFailed = RpcError
__all__ = ["CANCELLED", "UNAVAILABLE", "UNIMPLEMENTED", "RpcFailed", "ServerStream", "StreamOpener", "WireStreams"]

# A report stream is small and local: a second to connect, 64 KiB messages at most
# (an OrcaLoadReport with a few named metrics is a few hundred bytes).
CONNECT_TIMEOUT = 1.0
MAX_MESSAGE_BYTES = 64 << 10
CLOSE_TIMEOUT = 5.0


class ServerStream(Protocol):
    async def read(self) -> bytes | None:
        """The next message; None once the stream has ended with OK. Raises RpcFailed
        when it ended otherwise (or never started)."""

    def cancel(self) -> None:
        """Ends the call (RST_STREAM CANCEL) if it is still open; idempotent."""


class StreamOpener(Protocol):
    def open(self, address: str, method: str, request: bytes) -> ServerStream:
        """Starts `method` on the endpoint at `address` with one request message."""

    def sync(self, addresses: frozenset[str]) -> None:
        """Releases what it holds for addresses no longer in `addresses`."""

    async def close(self) -> None: ...


class WireStream:
    """One server stream; connects (or reuses the address's connection) and sends
    its request on the first read."""

    __slots__ = ("_streams", "_address", "_method", "_request", "_call", "_cancelled")

    def __init__(self, streams: WireStreams, address: str, method: str, request: bytes) -> None:
        self._streams, self._address, self._method, self._request = streams, address, method, request
        self._call = None
        self._cancelled = False

    async def read(self) -> bytes | None:
        if self._call is None:
            channel = await self._streams.channel(self._address)
            if self._cancelled:
                raise RpcFailed(CANCELLED, "cancelled before it started")
            self._call = channel.open_call(self._method, None)
            await self._call.send(self._request, end=True)
        return await self._call.recv()

    def cancel(self) -> None:
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()


class WireStreams:
    """StreamOpener on meshgrpc.grpcwire: one HTTP/2 connection per endpoint address
    (plaintext), made on first use, made again once lost, and closed by `sync` once
    the address has left the config. No retries: a failed stream is the signal."""

    def __init__(self, dialer: Dialer | None = None) -> None:
        self._dialer = dialer or Dialer(connect_timeout=CONNECT_TIMEOUT, max_message_bytes=MAX_MESSAGE_BYTES)
        self._channels: dict[str, asyncio.Future[Channel]] = {}
        self._closing: set[asyncio.Task] = set()

    def open(self, address: str, method: str, request: bytes) -> WireStream:
        return WireStream(self, address, method, request)

    async def channel(self, address: str) -> Channel:
        """The address's connection; streams that start together share one connect."""
        pending = self._channels.get(address)
        if pending is not None and pending.done() and (
                pending.cancelled() or pending.exception() is not None or pending.result().closed):
            pending = None  # failed, cancelled or lost: connect again
        if pending is None:
            pending = self._channels[address] = asyncio.ensure_future(self._dialer.connect(address))
        return await asyncio.shield(pending)

    def sync(self, addresses: frozenset[str]) -> None:
        for address in [a for a in self._channels if a not in addresses]:
            self._close_later(self._channels.pop(address))

    async def close(self) -> None:
        for pending in self._channels.values():
            self._close_later(pending)
        self._channels = {}
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=CLOSE_TIMEOUT)

    def _close_later(self, pending: asyncio.Future[Channel]) -> None:
        task = asyncio.get_running_loop().create_task(_close(pending))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def __repr__(self) -> str:
        return f"<WireStreams connections={len(self._channels)}>"


async def _close(pending: asyncio.Future[Channel]) -> None:
    try:
        channel = await pending
    except (RpcError, asyncio.CancelledError):
        return  # never connected: nothing to close
    await channel.close()
