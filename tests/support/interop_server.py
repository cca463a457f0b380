"""The gRPC interop TestService (grpc.aio) that stands behind the proxy in tests.

It implements the server features of grpc/grpc doc/interop-test-descriptions.md
that the standard client cases need (EmptyCall, UnaryCall, StreamingOutputCall,
StreamingInputCall, FullDuplexCall, HalfDuplexCall, Echo Status, Echo Metadata,
ResponseParameters.interval_us), plus grpc.health.v1 whose status tests can flip.
Two additions for mesh tests: every response carries an `x-backend: NAME` header
so a test can see which endpoint answered, and `delay_s` adds latency before
each call's first response. For balancing tests, `fail_code` makes every
TestService call end with that status (an endpoint that is up but failing), and
a running backend process drops its added latency on SIGHUP (a slow endpoint
that becomes fast again).

Also owns how a test backend is run: `start_in_process()` (asyncio),
`run_in_thread()` (sync tests) and `main()` (`python -m tests.support.interop_server
--port 0 [--name X] [--delay-ms N] [--fail-code N]`, logging `backend listening on HOST:PORT`).
tests/support/greeter.py reuses these.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshtest.interop import empty_pb2, messages_pb2, test_pb2_grpc

log = logging.getLogger("backend")

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"
# The trace headers a call arrived with, answered as x-seen-<name> (tests of the
# proxy's trace propagation read what the backend got).
SEEN = ("traceparent", "tracestate", "x-request-id")
BACKEND_HEADER = "x-backend"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclasses.dataclass(slots=True)
class BackendOptions:
    """How a test backend behaves; shared by the interop and greeter servers. Not
    frozen: a backend process changes `delay_s` at run time on SIGHUP."""

    name: str = ""  # echoed in the `x-backend` response header ("" = no header)
    delay_s: float = 0.0  # added before each call's first response
    fail_code: int = 0  # non-zero: TestService calls end with this gRPC status
    fail_percent: float = 100.0  # the share of calls fail_code applies to (drawn from `rng`)
    pushback: str = ""  # sent as grpc-retry-pushback-ms with each failure ("" = none)
    fail_after: int = 0  # with fail_code: StreamingOutputCall fails after this many messages
    # Initial metadata goes out with the first response message (as a plain gRPC
    # unary handler's does) instead of at once; x-backend is then not sent.
    lazy_headers: bool = False
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(0))
    calls: int = 0  # TestService calls received
    cancelled: int = 0  # calls their client (the proxy) cancelled during the added delay


# ---------------------------------------------------------------- the service

class TestService(test_pb2_grpc.TestServiceServicer):
    """grpc.testing.TestService as the interop descriptions specify it."""

    __test__ = False  # not a pytest test class

    def __init__(self, options: BackendOptions, sleep=asyncio.sleep, clock=time.time_ns) -> None:
        self._options = options
        self._sleep = sleep
        self._clock = clock

    async def EmptyCall(self, request, context):
        await self._begin(context)
        _set_echo_trailing(context)
        return empty_pb2.Empty()

    async def UnaryCall(self, request, context):
        await self._begin(context)
        await _maybe_echo_status(request, context)
        await _check_payload_type(request, context)
        if request.HasField("response_compressed") and request.response_compressed.value:
            context.set_compression(grpc.Compression.Gzip)
        _set_echo_trailing(context)
        return messages_pb2.SimpleResponse(
            payload=_payload(request.response_size), server_id=self._options.name)

    async def CacheableUnaryCall(self, request, context):
        # Payload is the current time so a cached answer is distinguishable.
        await self._begin(context, extra=(("cache-control", "max-age=60, public"),))
        _set_echo_trailing(context)
        body = str(self._clock()).encode()
        return messages_pb2.SimpleResponse(payload=messages_pb2.Payload(body=body))

    async def StreamingOutputCall(self, request, context):
        await self._begin(context)
        await _maybe_echo_status(request, context)
        await _check_payload_type(request, context)
        sent = 0
        async for response in self._respond(request):
            yield response
            sent += 1
            if sent == self._options.fail_after:
                await self._fail(context)
        _set_echo_trailing(context)

    async def StreamingInputCall(self, request_iterator, context):
        await self._begin(context)
        size = 0
        async for request in request_iterator:
            size += len(request.payload.body)
        _set_echo_trailing(context)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=size)

    async def FullDuplexCall(self, request_iterator, context):
        await self._begin(context)
        async for request in request_iterator:
            await _maybe_echo_status(request, context)
            await _check_payload_type(request, context)
            async for response in self._respond(request):
                yield response
        _set_echo_trailing(context)

    async def HalfDuplexCall(self, request_iterator, context):
        await self._begin(context)
        requests = [request async for request in request_iterator]
        for request in requests:
            await _maybe_echo_status(request, context)
            await _check_payload_type(request, context)
            async for response in self._respond(request):
                yield response
        _set_echo_trailing(context)

    async def UnimplementedCall(self, request, context):
        # Listed in test.proto so clients can call it; the descriptions require
        # that servers answer UNIMPLEMENTED.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "UnimplementedCall is not implemented")

    async def _begin(self, context, extra: Iterable[tuple[str, str]] = ()) -> None:
        """Added latency, then initial metadata: x-backend and the echoed header."""
        options = self._options
        options.calls += 1
        if options.delay_s > 0:
            try:
                await self._sleep(options.delay_s)
            except asyncio.CancelledError:  # the client (the proxy) cancelled the call
                options.cancelled += 1
                raise
        if options.fail_code and not options.fail_after and options.rng.random() * 100 < options.fail_percent:
            await self._fail(context)
        if options.lazy_headers:
            return
        headers = list(extra)
        if self._options.name:
            headers.append((BACKEND_HEADER, self._options.name))
        headers += [(k, v) for k, v in context.invocation_metadata() if k == ECHO_INITIAL]
        headers += [("x-seen-" + k, v) for k, v in context.invocation_metadata() if k in SEEN]
        await context.send_initial_metadata(headers)

    async def _fail(self, context) -> None:
        options = self._options
        code = _CODES.get(options.fail_code, grpc.StatusCode.UNKNOWN)
        trailers = (("grpc-retry-pushback-ms", options.pushback),) if options.pushback else ()
        await context.abort(code, f"backend {options.name} fails this call (--fail-code)", trailers)

    async def _respond(self, request) -> AsyncIterator[messages_pb2.StreamingOutputCallResponse]:
        # interval_us is a sleep *before* each response (Observe interval_us).
        for params in request.response_parameters:
            if params.interval_us > 0:
                await self._sleep(params.interval_us / 1e6)
            yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))


def _payload(size: int) -> messages_pb2.Payload:
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(size))


async def _check_payload_type(request, context) -> None:
    # The descriptions: an unsupported response_type fails with INVALID_ARGUMENT.
    if request.response_type != messages_pb2.COMPRESSABLE:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"unsupported response_type {request.response_type}",
                            _echo_trailing(context))


def _echo_trailing(context) -> tuple[tuple[str, bytes], ...]:
    # A tuple: grpc.aio's abort() rejects a list.
    return tuple((k, v) for k, v in context.invocation_metadata() if k == ECHO_TRAILING)


def _set_echo_trailing(context) -> None:
    context.set_trailing_metadata(_echo_trailing(context))


async def _maybe_echo_status(request, context) -> None:
    """Echo Status: a request carrying response_status ends the call with it."""
    if not request.HasField("response_status") or request.response_status.code == 0:
        return
    code = _CODES.get(request.response_status.code, grpc.StatusCode.UNKNOWN)
    await context.abort(code, request.response_status.message, _echo_trailing(context))


# ---------------------------------------------------------------- running it

class Backend:
    """A started grpc.aio test server in the current event loop."""

    def __init__(self, server: grpc.aio.Server, address: str, health_servicer) -> None:
        self.server = server
        self.address = address
        self._health = health_servicer

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    async def set_serving(self, serving: bool, service: str = "") -> None:
        """Flips grpc.health.v1 status for `service` ("" = the whole server)."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else \
            health_pb2.HealthCheckResponse.NOT_SERVING
        await self._health.set(service, status)

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.server.stop(grace)

    def __repr__(self) -> str:
        return f"Backend(address={self.address!r})"


AddServices = Callable[[grpc.aio.Server, BackendOptions], None]


def add_test_service(server: grpc.aio.Server, options: BackendOptions) -> None:
    test_pb2_grpc.add_TestServiceServicer_to_server(TestService(options), server)


async def start_in_process(host: str = "127.0.0.1", port: int = 0, *,
                           options: BackendOptions = BackendOptions(),
                           add_services: AddServices = add_test_service, max_streams: int = 0) -> Backend:
    """Starts a backend in the running loop, bound at HOST:PORT (0 = any free port);
    `max_streams` > 0 is the SETTINGS_MAX_CONCURRENT_STREAMS it allows per connection."""
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", max_streams)] if max_streams else None)
    add_services(server, options)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    await server.start()
    backend = Backend(server, f"{host}:{bound}", health_servicer)
    await backend.set_serving(True)
    return backend


class ThreadedBackend:
    """A backend on its own event loop in a daemon thread, for sync tests (a sync
    grpcio client would block the loop of an in-loop server). Use as a context
    manager; `stop()` shuts the server down and joins the thread."""

    def __init__(self, start_timeout: float = 10.0, **start_kwargs) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="test-backend")
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(start_in_process(**start_kwargs), self._loop)
        self.backend: Backend = future.result(start_timeout)
        self.address = self.backend.address

    def set_serving(self, serving: bool, service: str = "", timeout: float = 5.0) -> None:
        coro = self.backend.set_serving(serving, service)
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, grace: float = 0.5, timeout: float = 10.0) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.backend.stop(grace), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()

    def __enter__(self) -> ThreadedBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_in_thread(**start_kwargs) -> ThreadedBackend:
    """`with run_in_thread(options=BackendOptions(name="a")) as b: ... b.address`."""
    return ThreadedBackend(**start_kwargs)


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (logged)")
    parser.add_argument("--name", default="", help="sent back in the x-backend header")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="latency added before each call's first response")
    parser.add_argument("--fail-code", type=int, default=0,
                        help="end TestService calls with this gRPC status code (0 = off)")
    parser.add_argument("--fail-percent", type=float, default=100.0,
                        help="the share of calls --fail-code applies to (default 100)")
    parser.add_argument("--pushback-ms", default="", help="grpc-retry-pushback-ms sent with each failure")
    parser.add_argument("--fail-after", type=int, default=0,
                        help="with --fail-code: StreamingOutputCall fails after this many messages")
    parser.add_argument("--seed", type=int, default=0, help="seeds the --fail-percent draws")
    parser.add_argument("--max-streams", type=int, default=0,
                        help="SETTINGS_MAX_CONCURRENT_STREAMS per connection (0 = gRPC's default)")
    parser.add_argument("--lazy-headers", action="store_true",
                        help="send initial metadata with the first response message (no x-backend)")
    parser.add_argument("--not-serving", action="store_true",
                        help="start with grpc.health.v1 status NOT_SERVING")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, add_services: AddServices) -> None:
    """Runs until SIGTERM/SIGINT. SIGUSR1 sets health NOT_SERVING, SIGUSR2 SERVING;
    SIGHUP drops the added latency (--delay-ms) to zero."""
    options = BackendOptions(name=args.name, delay_s=args.delay_ms / 1000, fail_code=args.fail_code,
                             fail_percent=args.fail_percent, pushback=args.pushback_ms, fail_after=args.fail_after,
                             lazy_headers=args.lazy_headers,
                             rng=random.Random(args.seed))
    backend = await start_in_process(args.host, args.port, options=options,
                                     add_services=add_services, max_streams=args.max_streams)
    if args.not_serving:
        await backend.set_serving(False)
    log.info("backend listening on %s", backend.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for sig, serving in ((signal.SIGUSR1, False), (signal.SIGUSR2, True)):
        loop.add_signal_handler(sig, _flip_health, backend, serving, tasks)
    loop.add_signal_handler(signal.SIGHUP, _no_delay, options)
    await stop.wait()
    log.info("backend stats calls=%d cancelled=%d", options.calls, options.cancelled)
    log.info("backend stopping")
    await backend.stop(1.0)


def _flip_health(backend: Backend, serving: bool, tasks: set[asyncio.Task]) -> None:
    task = asyncio.get_running_loop().create_task(backend.set_serving(serving))
    tasks.add(task)  # keep a reference until done
    task.add_done_callback(tasks.discard)
    log.info("backend health %s", "SERVING" if serving else "NOT_SERVING")


def _no_delay(options: BackendOptions) -> None:
    options.delay_s = 0.0  # the services hold this same object and read it per call
    log.info("backend delay 0 ms")


def main(argv: list[str] | None = None, add_services: AddServices = add_test_service,
         description: str = "gRPC interop TestService for meshgrpc tests") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # grpc.aio logs a whole traceback (ExecuteBatchError) for each call whose client
    # reset it while its response was being sent: tens of milliseconds of formatting
    # when a client resets many calls at once, which every other caller would wait on.
    logging.getLogger("grpc._cython.cygrpc").setLevel(logging.CRITICAL)
    asyncio.run(serve(parse_args(argv, description), add_services))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
