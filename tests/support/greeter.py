"""The classic helloworld.Greeter server, for the README example and the demo.

`python -m tests.support.greeter --port 0 [--name X] [--delay-ms N]` logs
`backend listening on HOST:PORT`; the reply says which backend answered (and so
does the `x-backend` header), so a reader can watch the proxy balance calls.
Running it (health service, signals, in-thread use) is shared with
tests/support/interop_server.py.
"""

from __future__ import annotations

import asyncio

import grpc

from helloworld import helloworld_pb2, helloworld_pb2_grpc
from tests.support.interop_server import BACKEND_HEADER, BackendOptions, main as _main


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def __init__(self, options: BackendOptions, sleep=asyncio.sleep) -> None:
        self._options = options
        self._sleep = sleep

    async def SayHello(self, request, context):
        if self._options.delay_s > 0:
            await self._sleep(self._options.delay_s)
        if self._options.name:
            await context.send_initial_metadata(((BACKEND_HEADER, self._options.name),))
        return helloworld_pb2.HelloReply(message=greeting(request.name, self._options.name))


def greeting(name: str, backend: str) -> str:
    text = f"Hello, {name or 'world'}!"
    return f"{text} (from {backend})" if backend else text


def add_greeter(server: grpc.aio.Server, options: BackendOptions) -> None:
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(options), server)


def main(argv: list[str] | None = None) -> int:
    return _main(argv, add_services=add_greeter, description="helloworld.Greeter for meshgrpc")


if __name__ == "__main__":
    raise SystemExit(main())
