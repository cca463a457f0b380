"""What one idle bidirectional gRPC stream costs a server, with nothing else of
meshgrpc in it: the floor under the control plane's memory per subscribed stream.

    python -m bench.stream_floor [--streams 3000] [--per-channel 100] [--codec]

A server process with an echo handler (one read pending, as a discovery stream
has) and a client process holding `streams` streams, `per-channel` to an HTTP/2
connection as bench/delta_load.py does; the server's RSS growth per stream is
printed as JSON. `--codec` serves the same streams on meshgrpc's gRPC server
(meshgrpc/grpcwire/server.py, the control plane's) instead of grpc.aio. On this
machine, 2,000 streams: grpc.aio 23.8 KiB per stream at 100 per connection and
39.3 KiB at one per connection; grpcwire's server 3.3 and 12.5 KiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

import grpc

from bench import procstat

METHOD = "/floor.Floor/Echo"
# grpc.aio's own options for a server that accepts thousands of streams at once
# (what the control plane used while it served on grpc.aio):
# gRPC core cancels new calls that wait for the application to accept them once
# more than 1,000 are pending (and refuses them above 3,000): a replica's proxies
# reconnecting at once (thousands, when another replica dies) are a burst the
# event loop accepts within seconds, not an overload to shed.
SERVER_OPTIONS = (("grpc.server.max_pending_requests", 50_000),
                  ("grpc.server.max_pending_requests_hard_limit", 100_000))


async def _echo(request_iterator, context) -> None:
    while (message := await context.read()) is not grpc.aio.EOF:
        await context.write(message)


async def serve() -> None:
    server = grpc.aio.server(options=list(SERVER_OPTIONS))
    server.add_generic_rpc_handlers((_echo_service(),))
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    await server.start()
    await server.wait_for_termination()


async def serve_codec() -> None:
    """The same echo on meshgrpc's gRPC server (grpcwire/server.py), the control plane's."""
    from meshgrpc.grpcwire.server import Server
    server = Server()
    server.add_generic_rpc_handlers((_echo_service(),))
    print(await server.bind("127.0.0.1:0"), flush=True)
    await server.start()
    await asyncio.Event().wait()


def _echo_service():
    handler = grpc.stream_stream_rpc_method_handler(_echo)
    return grpc.method_handlers_generic_handler("floor.Floor", {"Echo": handler})


async def hold(port: int, streams: int, per_channel: int) -> None:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(0, streams, per_channel)]
    calls = [channels[i // per_channel].stream_stream(METHOD)() for i in range(streams)]

    async def open_one(call) -> None:
        await call.write(b"x" * 100)
        await call.read()
    await asyncio.gather(*(open_one(c) for c in calls))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()


def measure(streams: int, per_channel: int, codec: bool = False) -> dict:
    server = subprocess.Popen([sys.executable, "-m", "bench.stream_floor", "--serve-codec" if codec else "--serve"],
                              stdout=subprocess.PIPE, text=True)
    client = None
    try:
        port = int(server.stdout.readline())
        time.sleep(0.5)
        before = procstat.memory_kib(server.pid)["VmRSS"]
        client = subprocess.Popen([sys.executable, "-m", "bench.stream_floor", "--hold", str(port),
                                   "--streams", str(streams), "--per-channel", str(per_channel)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "ready", "the streams did not open"
        time.sleep(0.5)
        after = procstat.memory_kib(server.pid)["VmRSS"]
        return {"server": "meshgrpc grpcwire" if codec else "grpc.aio", "streams": streams, "per_channel": per_channel,
                "kib_per_stream": round((after - before) / streams, 2)}
    finally:
        if client is not None:
            client.stdin.close()
            client.wait(30)
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.stream_floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=3000)
    ap.add_argument("--per-channel", type=int, default=100)
    ap.add_argument("--codec", action="store_true",
                    help="serve the streams on meshgrpc's gRPC server (grpcwire) instead of grpc.aio")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-codec", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hold", type=int, metavar="PORT", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        asyncio.run(serve())
    elif a.serve_codec:
        asyncio.run(serve_codec())
    elif a.hold:
        asyncio.run(hold(a.hold, a.streams, a.per_channel))
    else:
        print(json.dumps(measure(a.streams, a.per_channel, a.codec)))


if __name__ == "__main__":
    main()
