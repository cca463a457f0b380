"""The benchmark's backend: a grpc.aio echo service that counts what it answered.

`python -m bench.echo_backend` logs `backend listening on HOST:PORT`. Methods
(raw bytes, nothing parsed): /echo.Echo/Unary returns the request,
/echo.Echo/Stream echoes every message of a bidirectional stream, and
/echo.Echo/Count returns the number of Unary calls answered so far (ASCII), so
the harness can check that every call a load generator counted really reached
the backend and ended with grpc-status 0 (h2load only sees HTTP 200).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc

log = logging.getLogger("backend")
SERVICE = "echo.Echo"


def _ident(data: bytes) -> bytes:
    return data


class Echo:
    def __init__(self) -> None:
        self.answered = 0

    async def unary(self, request: bytes, context) -> bytes:
        self.answered += 1
        return request

    async def stream(self, requests, context):
        async for message in requests:
            yield message

    async def count(self, request: bytes, context) -> bytes:
        return str(self.answered).encode()

    def handlers(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": unary(self.unary, _ident, _ident),
            "Count": unary(self.count, _ident, _ident),
            "Stream": grpc.stream_stream_rpc_method_handler(self.stream, _ident, _ident),
        })


async def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    # A generous stream limit: nginx opens one upstream connection per call, h2load many streams.
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 1000)])
    server.add_generic_rpc_handlers([Echo().handlers()])
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    log.info("backend listening on %s:%d", host, bound)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    import uvloop
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uvloop.run(serve())


if __name__ == "__main__":
    main()
