"""The sample service `meshgrpc demo` runs: helloworld.Greeter backends that say
who answered (in the reply and in an `x-backend` response header), can be slowed
down, report their load to the mesh's balancers (meshgrpc.orca: per-call trailers
and the OpenRcaService stream), with grpc.health.v1 reporting SERVING.

    python -m meshgrpc.demo_backends --name greeter-1 [--delay-ms 25] [--cost-ms 3] [--port 0]

`--cost-ms C` makes the backend report an application utilization of its qps x C
ms (what C ms of work per call would use of one core), so WEIGHTED_ROUND_ROBIN
sends it calls in proportion to 1 / C. SIGUSR1 pauses its load reports, SIGUSR2
resumes them. Logs `backend listening on HOST:PORT` once bound and stops on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from helloworld import helloworld_pb2, helloworld_pb2_grpc
from meshgrpc import orca

log = logging.getLogger("backend")
BACKEND_HEADER = "x-backend"


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def __init__(self, name: str, delay_s: float, reporter: orca.LoadReporter, cost_s: float = 0.0) -> None:
        self._name = name
        self._delay_s = delay_s
        self._reporter = reporter
        self._cost_s = cost_s

    async def SayHello(self, request, context):
        if self._delay_s > 0:
            await asyncio.sleep(self._delay_s)  # the "slow backend" the balancer should avoid
        if self._cost_s > 0:
            self._reporter.set_utilization(self._reporter.qps() * self._cost_s)
        await context.send_initial_metadata(((BACKEND_HEADER, self._name),))
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name or 'world'}! (from {self._name})")


async def serve(name: str, delay_s: float, host: str = "127.0.0.1", port: int = 0, cost_s: float = 0.0) -> None:
    reporter = orca.LoadReporter()
    server = grpc.aio.server(interceptors=[reporter.aio_interceptor()])
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(name, delay_s, reporter, cost_s), server)
    reporter.add_service(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    log.info("backend listening on %s:%d", host, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _reports, reporter, False)
    loop.add_signal_handler(signal.SIGUSR2, _reports, reporter, True)
    await stop.wait()
    await server.stop(1.0)


def _reports(reporter: orca.LoadReporter, on: bool) -> None:
    (reporter.resume if on else reporter.pause)()
    log.info("backend load reports %s", "resumed" if on else "paused")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m meshgrpc.demo_backends", description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--cost-ms", type=float, default=0.0,
                    help="report an application utilization of qps x this many ms (0: none)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(a.name, a.delay_ms / 1000, a.host, a.port, a.cost_ms / 1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
