"""The seam the proxy's load-report clients speak through: open a server-streaming
gRPC call to an endpoint, read its messages, cancel it. The OOB subscription and
PREQUAL's probes are written against `StreamOpener`, so they run on grpcio today
(`GrpcioStreams`), on meshgrpc's own gRPC client once the proxy has one, and on a
fake stream in unit tests. Messages are bytes both ways; the callers parse.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import grpc

UNIMPLEMENTED = 12
UNAVAILABLE = 14


class RpcFailed(Exception):
    """A stream ended with a status other than OK (or never started)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(f"status {code}: {message}")
        self.code = code
        self.message = message


class ServerStream(Protocol):
    async def read(self) -> bytes | None:
        """The next message; None once the stream has ended with OK. Raises RpcFailed
        when it ended otherwise."""

    def cancel(self) -> None:
        """Ends the call (RST_STREAM CANCEL) if it is still open; idempotent."""


class StreamOpener(Protocol):
    def open(self, address: str, method: str, request: bytes) -> ServerStream:
        """Starts `method` on the endpoint at `address` with one request message."""

    def sync(self, addresses: frozenset[str]) -> None:
        """Releases what it holds for addresses no longer in `addresses`."""

    async def close(self) -> None: ...


# No retries (a failed stream is the signal), a connection of its own per endpoint,
# and reconnect back-off capped near the default report interval.
CHANNEL_OPTIONS = (("grpc.enable_retries", 0), ("grpc.use_local_subchannel_pool", 1),
                   ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000))


class GrpcioStream:
    __slots__ = ("_call",)

    def __init__(self, call) -> None:
        self._call = call

    async def read(self) -> bytes | None:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as e:
            raise RpcFailed(e.code().value[0], e.details() or "") from None
        if message is grpc.aio.EOF:
            code = await self._call.code()
            if code is not grpc.StatusCode.OK:
                raise RpcFailed(code.value[0], await self._call.details() or "")
            return None
        return message

    def cancel(self) -> None:
        self._call.cancel()


class GrpcioStreams:
    """StreamOpener on grpc.aio: one channel per endpoint address, opened on first
    use and closed by `sync` once the address has left the config."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task] = set()  # channels of addresses gone, being closed

    def open(self, address: str, method: str, request: bytes) -> GrpcioStream:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        return GrpcioStream(channel.unary_stream(method)(request))

    def sync(self, addresses: frozenset[str]) -> None:
        for address in [a for a in self._channels if a not in addresses]:
            task = asyncio.get_running_loop().create_task(self._channels.pop(address).close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=5.0)

    def __repr__(self) -> str:
        return f"<GrpcioStreams channels={len(self._channels)}>"
