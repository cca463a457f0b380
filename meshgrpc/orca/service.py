"""The out-of-band half of ORCA (gRFC A51): `xds.service.orca.v3.OpenRcaService`'s
`StreamCoreMetrics`, a stream of the backend's load reports, the first at once and
then one every `report_interval` the client asks for, raised to MIN_INTERVAL
(unset: DEFAULT_INTERVAL); nothing while the recorder is paused. The proxy's PREQUAL probes read the first report and
cancel; its out-of-band subscriptions keep the stream open.

xds-protos ships the messages but no service stubs, so the service is registered
as a generic handler. A sync server runs each open stream on one of its pool's
threads until the client cancels: give the pool room for the proxies that subscribe.
"""

from __future__ import annotations

import asyncio
import threading

import grpc
from xds.data.orca.v3.orca_load_report_pb2 import OrcaLoadReport
from xds.service.orca.v3.orca_pb2 import OrcaLoadReportRequest

from meshgrpc import orca_wire
from meshgrpc.orca.recorder import LoadRecorder

DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.1


def interval_of(request: OrcaLoadReportRequest, default: float = DEFAULT_INTERVAL,
                minimum: float = MIN_INTERVAL) -> float:
    asked = request.report_interval.seconds + request.report_interval.nanos / 1e9
    return max(minimum, asked) if asked > 0 else default


def _sync_stream(recorder: LoadRecorder):
    def stream(request, context):
        interval = interval_of(request)
        ended = threading.Event()
        context.add_callback(ended.set)
        while True:
            report = recorder.report()
            if report is not None:
                yield report
            if ended.wait(interval):
                return
    return stream


def _aio_stream(recorder: LoadRecorder):
    async def stream(request, context):
        interval = interval_of(request)
        while True:
            report = recorder.report()
            if report is not None:
                yield report
            await asyncio.sleep(interval)
    return stream


def add_service(server, recorder: LoadRecorder) -> None:
    """Registers OpenRcaService on a `grpc.server` or `grpc.aio.server`."""
    is_aio = isinstance(server, grpc.aio.Server)
    handler = grpc.unary_stream_rpc_method_handler(
        (_aio_stream if is_aio else _sync_stream)(recorder),
        request_deserializer=OrcaLoadReportRequest.FromString,
        response_serializer=OrcaLoadReport.SerializeToString)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(orca_wire.SERVICE, {"StreamCoreMetrics": handler}),))
