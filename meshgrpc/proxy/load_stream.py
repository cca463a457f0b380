"""The load-report stream on meshgrpc's own gRPC client (meshgrpc/grpcwire): the
transport load_reporter.py runs on.

The only module of the reporter that knows its gRPC client: grpcwire's errors
become StreamBroken here. The stream opens with the proxy's discovery dialer, so
it carries the same credentials (a workload's current certificate at every
reconnect, or the operator's token) and keepalive as the discovery stream.
"""

from __future__ import annotations

import contextlib

from meshapi.v1 import load_pb2
from meshgrpc.grpcwire import Dialer, RpcError
from meshgrpc.proxy.load_reporter import StreamBroken

METHOD = "/meshapi.v1.LoadReporting/StreamLoadReports"


class _ReportStream:
    __slots__ = ("_call",)

    def __init__(self, call) -> None:
        self._call = call

    async def write(self, report: load_pb2.LoadReport) -> None:
        try:
            await self._call.send(report)
        except RpcError as e:
            raise StreamBroken(str(e)) from None

    async def read(self) -> load_pb2.LoadReportResponse | None:
        try:
            return await self._call.recv()
        except RpcError as e:
            raise StreamBroken(str(e)) from None


def connector(dialer: Dialer):
    """A load_reporter Connect: one connection and stream per connect."""
    @contextlib.asynccontextmanager
    async def connect(target: str):
        try:
            async with dialer.open_stream(target, METHOD, load_pb2.LoadReportResponse) as call:
                try:
                    yield _ReportStream(call)
                finally:
                    call.cancel()
        except RpcError as e:
            raise StreamBroken(str(e)) from None
    return connect
