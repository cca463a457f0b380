"""The LoadReporting gRPC service: each proxy's stream of load reports into the
LoadBook (load_book.py).

A stream's first report names the node; the answer tells the proxy how often to
report. A stream that goes silent for SILENT_INTERVALS intervals (at least
MIN_SILENCE_S) is ended with DEADLINE_EXCEEDED and its proxy forgotten, as one
that closes is: a vanished proxy does not linger on the dashboard.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from meshapi.v1 import load_pb2, load_pb2_grpc
from meshgrpc.config.specs import duration, seconds
from meshgrpc.controlplane.load_book import LoadBook
from meshgrpc.errors import ConfigError, FieldError, MeshError

log = logging.getLogger(__name__)

SILENT_INTERVALS = 5
MIN_SILENCE_S = 10.0


class LoadReportingServicer(load_pb2_grpc.LoadReportingServicer):
    def __init__(self, book: LoadBook) -> None:
        self._book = book
        self._silence = max(MIN_SILENCE_S, SILENT_INTERVALS * book.interval)

    def add_to(self, server: grpc.aio.Server) -> None:
        load_pb2_grpc.add_LoadReportingServicer_to_server(self, server)

    async def StreamLoadReports(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        try:
            await self._serve(context)
        except MeshError as e:
            await context.abort(e.code, str(e))

    async def _serve(self, context: grpc.aio.ServicerContext) -> None:
        first = await self._read(context)
        if first is None:
            return
        if not first.node.id:
            raise ConfigError([FieldError("node.id", "required in the first report")])
        window = self._book.open(first.node.id, first.node.zone)
        log.info("load reports from node %r (%s)", first.node.id, context.peer())
        try:
            await context.write(load_pb2.LoadReportResponse(report_interval=duration(self._book.interval)))
            while (report := await self._read(context)) is not None:
                if seconds(report.window) <= 0:
                    raise ConfigError([FieldError("window", "must be > 0 after the first report")])
                self._book.add(window, report)
        finally:
            self._book.close(window)

    async def _read(self, context: grpc.aio.ServicerContext) -> load_pb2.LoadReport | None:
        try:
            message = await asyncio.wait_for(context.read(), timeout=self._silence)
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"no load report within {self._silence:g}s")
        return None if message is grpc.aio.EOF else message
