"""The load-report stream on grpc.aio: the transport load_reporter.py runs on.

The only module of the reporter that knows its gRPC client: grpc.aio's errors
become StreamBroken here. When the proxy's gRPC client changes, this adapter is
what changes.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from meshapi.v1 import load_pb2
from meshgrpc.proxy.load_reporter import StreamBroken

METHOD = "/meshapi.v1.LoadReporting/StreamLoadReports"


class _GrpcReportStream:
    __slots__ = ("_call",)

    def __init__(self, call) -> None:
        self._call = call

    async def write(self, report: load_pb2.LoadReport) -> None:
        try:
            await self._call.write(report)
        except grpc.aio.AioRpcError as e:
            raise StreamBroken(f"{e.code().name}: {e.details()}") from None
        except asyncio.InvalidStateError:  # a write after the server ended the stream with OK
            raise StreamBroken("the control plane ended the stream") from None

    async def read(self) -> load_pb2.LoadReportResponse | None:
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as e:
            raise StreamBroken(f"{e.code().name}: {e.details()}") from None
        return None if response is grpc.aio.EOF else response


def connector(credentials, channel_options: tuple = ()):
    """A load_reporter Connect: one channel and stream per connection, opened by
    `credentials` (`aio_channel(target, options)`: control_channel.ClientCredentials,
    or a workload's identity, whose certificate is the current one at every reconnect)."""
    @contextlib.asynccontextmanager
    async def connect(target: str):
        async with credentials.aio_channel(target, options=channel_options) as channel:
            call = channel.stream_stream(METHOD, request_serializer=load_pb2.LoadReport.SerializeToString,
                                         response_deserializer=load_pb2.LoadReportResponse.FromString)()
            try:
                yield _GrpcReportStream(call)
            finally:
                call.cancel()
    return connect
