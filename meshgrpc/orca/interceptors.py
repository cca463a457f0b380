"""Server interceptors that count every call in a LoadRecorder and attach the
backend's load report to its trailers (`endpoint-load-metrics-bin`, gRFC A51's
per-call report), for grpcio's sync and asyncio servers.

A call counts from the moment its handler starts until it returns or raises (for
streaming responses, until the last message); it failed if it raised or set a
status other than OK. The report goes after any trailing metadata the handler set,
so the application keeps its own. Calls to the ORCA service itself, health checks
and reflection are neither counted nor reported on: they are not the backend's load.
"""

from __future__ import annotations

import inspect

import grpc

from meshgrpc import orca_wire
from meshgrpc.orca.recorder import LoadRecorder

NOT_COUNTED = (f"/{orca_wire.SERVICE}/", "/grpc.health.v1.", "/grpc.reflection.")
_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def counted(method: str) -> bool:
    return not method.startswith(NOT_COUNTED)


def _ok(context) -> bool:
    code = context.code()
    return code is None or code == grpc.StatusCode.OK or code == 0


def _finish(recorder: LoadRecorder, context, started: tuple[float, int], ok: bool) -> None:
    """Counts the call's end and puts the report after the handler's own trailers."""
    recorder.finished(started, ok)
    report = recorder.report()
    if report is not None:
        trailers = tuple(context.trailing_metadata() or ())
        context.set_trailing_metadata(trailers + ((orca_wire.TRAILER, report.SerializeToString()),))


class ServerInterceptor(grpc.ServerInterceptor):
    """For `grpc.server(..., interceptors=[...])`."""

    def __init__(self, recorder: LoadRecorder) -> None:
        self._recorder = recorder

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not counted(handler_call_details.method):
            return handler
        for kind in _KINDS:
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                wrap = self._streaming if handler.response_streaming else self._single
                return handler._replace(**{kind: wrap(behaviour)})
        return handler

    def _single(self, behaviour):
        recorder = self._recorder

        def reported(request, context):
            started, ok = recorder.started(), False
            try:
                response = behaviour(request, context)
                ok = _ok(context)
                return response
            finally:
                _finish(recorder, context, started, ok)
        return reported

    def _streaming(self, behaviour):
        recorder = self._recorder

        def reported(request, context):
            started, ok = recorder.started(), False
            try:
                yield from behaviour(request, context)
                ok = _ok(context)
            finally:
                _finish(recorder, context, started, ok)
        return reported


class AioServerInterceptor(grpc.aio.ServerInterceptor):
    """For `grpc.aio.server(interceptors=[...])`."""

    def __init__(self, recorder: LoadRecorder) -> None:
        self._recorder = recorder

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or not counted(handler_call_details.method):
            return handler
        for kind in _KINDS:
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                wrap = self._generator if inspect.isasyncgenfunction(behaviour) else self._coroutine
                return handler._replace(**{kind: wrap(behaviour)})
        return handler

    def _coroutine(self, behaviour):
        recorder = self._recorder

        async def reported(request, context):
            started, ok = recorder.started(), False
            try:
                response = await behaviour(request, context)
                ok = _ok(context)
                return response
            finally:
                _finish(recorder, context, started, ok)
        return reported

    def _generator(self, behaviour):
        recorder = self._recorder

        async def reported(request, context):
            started, ok = recorder.started(), False
            try:
                async for response in behaviour(request, context):
                    yield response
                ok = _ok(context)
            finally:
                _finish(recorder, context, started, ok)
        return reported
