"""One backend of the balancing benchmark's fleet (bench/balancing.py): a grpc.aio
server whose calls wait for one of `--concurrency` slots, hold it for a service
time drawn from an exponential distribution (mean `--service-ms`), and release it,
so queues form in front of a busy backend. It reports its load with meshgrpc.orca
(application utilization: the share of its slots busy over the last second).

    python -m bench.fleet_backend --name b0 [--service-ms 50] [--concurrency 3] [--port 0] [--seed N]

Methods (raw bytes, no proto): /bench.Fleet/Work (the call under test; answers
its backend's name), /bench.Fleet/Stats (JSON: calls, busy slot-seconds, the
backend's monotonic clock, ORCA streams opened: probes and subscriptions), /bench.Fleet/Configure (JSON:
{"slowdown": 2.0} multiplies service times, {"stall_every": 2.0, "stall_for": 0.2}
freezes the backend, running calls included, for stall_for seconds in every
stall_every; {} restores it). Logs `backend listening on HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import time

import grpc
import uvloop

from meshgrpc import orca, orca_wire

log = logging.getLogger("backend")
SERVICE = "bench.Fleet"
UTILIZATION_WINDOW = 1.0  # seconds the reported utilization covers
UTILIZATION_TICK = 0.1


def _ident(b: bytes) -> bytes:
    return b


class Fleet:
    def __init__(self, name: str, service_s: float, concurrency: int, rng: random.Random,
                 reporter: orca.LoadReporter) -> None:
        self.name = name.encode()
        self.service_s = service_s
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self.rng = rng
        self.reporter = reporter
        self.slowdown = 1.0
        self.stall_every = self.stall_for = 0.0
        self.calls = 0
        self.orca_streams = 0  # ORCA streams opened: PREQUAL's probes and OOB subscriptions
        self.busy = 0.0  # slot-seconds of finished service (busy_now adds the running calls')
        self.running: dict[int, float] = {}  # call id -> service start

    async def work(self, request: bytes, context) -> bytes:
        await self._unstalled()
        async with self.slots:
            started = time.monotonic()
            key = id(context)
            self.running[key] = started
            try:
                await asyncio.sleep(self.rng.expovariate(1.0 / (self.service_s * self.slowdown)))
                await self._unstalled()
            finally:
                del self.running[key]
                self.busy += time.monotonic() - started
        self.calls += 1
        return self.name

    async def _unstalled(self) -> None:
        """Waits out a stall (a GC pause, a noisy neighbour: the whole backend stops)."""
        if self.stall_every <= 0:
            return
        phase = time.monotonic() % self.stall_every
        if phase < self.stall_for:
            await asyncio.sleep(self.stall_for - phase)

    def busy_now(self) -> float:
        now = time.monotonic()
        return self.busy + sum(now - t for t in self.running.values())

    async def report_utilization(self) -> None:
        """Application utilization: the busy share of the slots over the last second."""
        window: list[tuple[float, float]] = [(time.monotonic(), self.busy_now())]
        while True:
            await asyncio.sleep(UTILIZATION_TICK)
            window.append((time.monotonic(), self.busy_now()))
            while window[-1][0] - window[0][0] > UTILIZATION_WINDOW and len(window) > 2:
                window.pop(0)
            (t0, b0), (t1, b1) = window[0], window[-1]
            self.reporter.set_utilization((b1 - b0) / ((t1 - t0) * self.concurrency))

    async def stats(self, request: bytes, context) -> bytes:
        return json.dumps({"calls": self.calls, "busy_slot_seconds": self.busy_now(), "clock": time.monotonic(),
                           "concurrency": self.concurrency, "orca_streams": self.orca_streams}).encode()

    async def configure(self, request: bytes, context) -> bytes:
        settings = json.loads(request or b"{}")
        self.slowdown = float(settings.get("slowdown", 1.0))
        self.stall_every = float(settings.get("stall_every", 0.0))
        self.stall_for = float(settings.get("stall_for", 0.0))
        log.info("backend configured %s", settings)
        return b"{}"


class CountOrcaStreams(grpc.aio.ServerInterceptor):
    """Counts the ORCA streams opened (PREQUAL's probes and out-of-band subscriptions)."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    async def intercept_service(self, continuation, details):
        if details.method == orca_wire.STREAM_METHOD:
            self._fleet.orca_streams += 1
        return await continuation(details)


async def serve(args: argparse.Namespace) -> None:
    reporter = orca.LoadReporter()
    fleet = Fleet(args.name, args.service_ms / 1000, args.concurrency, random.Random(args.seed), reporter)
    server = grpc.aio.server(interceptors=[CountOrcaStreams(fleet), reporter.aio_interceptor()],
                             options=[("grpc.max_concurrent_streams", 10_000)])
    handlers = {name: grpc.unary_unary_rpc_method_handler(fn, request_deserializer=_ident, response_serializer=_ident)
                for name, fn in (("Work", fleet.work), ("Stats", fleet.stats), ("Configure", fleet.configure))}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    reporter.add_service(server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    await server.start()
    ticker = asyncio.get_running_loop().create_task(fleet.report_utilization())
    log.info("backend listening on %s:%d", args.host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    ticker.cancel()
    await server.stop(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fleet_backend", description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--service-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvloop.run(serve(a))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
