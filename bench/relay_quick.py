"""Quick relay micro-benchmark (not a test): unary calls direct to a grpc.aio echo
backend vs through the relay, interleaved rounds, printing calls/s, the ratio to
direct and the relay process's CPU per call (from /proc/PID/stat).

    .venv/bin/python -m bench.relay_quick [--seconds 3] [--rounds 3] [--concurrency 64]
    .venv/bin/python -m bench.relay_quick --h2load    # load from h2load (nghttp2-client)
    .venv/bin/python -m bench.relay_quick --profile   # cProfile of the relay, top 25

Backend and relay each run in their own process so CPU is attributed cleanly; the
client is grpc.aio in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

PAYLOAD = b"x" * 100
TICKS = os.sysconf("SC_CLK_TCK")


def _ident(b):
    return b


async def _backend() -> None:
    import grpc

    async def echo(request, context):
        return request
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "echo.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(echo, _ident, _ident)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"backend listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def _relay(upstream: str, profile: str | None) -> None:
    from tests.integration.relay_harness import cluster_set, route_config
    from meshgrpc.proxy.listener import serve
    from meshgrpc.proxy.relay import Relay
    from meshgrpc.proxy.router import RouteTable
    from meshgrpc.proxy.state import ProxyState, StateHolder
    from meshgrpc.proxy.upstream import UpstreamPools
    state = ProxyState(RouteTable.compile(route_config({"/": "echo"})), cluster_set({"echo": [upstream]}))
    pools = UpstreamPools()
    listener = await serve(Relay(StateHolder(state), pools), "127.0.0.1", 0)
    print(f"proxy listening on 127.0.0.1:{listener.port}", flush=True)
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _load(target: str, seconds: float, concurrency: int) -> int:
    import grpc
    async with grpc.aio.insecure_channel(target) as ch:
        call = ch.unary_unary("/echo.Echo/Unary", request_serializer=_ident, response_deserializer=_ident)
        for _ in range(50):
            await call(PAYLOAD)
        done = 0
        stop = time.monotonic() + seconds

        async def worker():
            nonlocal done
            while time.monotonic() < stop:
                await call(PAYLOAD)
                done += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done


def _h2load(target: str, seconds: float, concurrency: int) -> int:
    """Unary gRPC calls with h2load (Debian nghttp2-client): one connection,
    `concurrency` streams in flight; returns calls that succeeded."""
    import re
    import struct
    body = "/tmp/relay_quick.grpc"
    with open(body, "wb") as f:
        f.write(b"\0" + struct.pack(">I", len(PAYLOAD)) + PAYLOAD)
    out = subprocess.run(
        ["h2load", f"http://{target}/echo.Echo/Unary", "-c", "1", "-m", str(concurrency),
         "-D", str(int(seconds)), "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers"],
        capture_output=True, text=True, check=True).stdout
    return int(re.search(r"(\d+) succeeded", out)[1])


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-m", "bench.relay_quick", *args], stdout=subprocess.PIPE,
                         stdin=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    return p, line.rsplit(" ", 1)[1].strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--h2load", action="store_true", help="load with h2load instead of grpc.aio")
    ap.add_argument("--serve-backend", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-relay", metavar="UPSTREAM", help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    import uvloop
    if a.serve_backend:
        return uvloop.run(_backend())
    if a.serve_relay:
        return uvloop.run(_relay(a.serve_relay, a.profile_out))

    backend, direct = _start(["--serve-backend"])
    prof_path = "/tmp/relay_quick.prof" if a.profile else None
    relay, proxied = _start(["--serve-relay", direct] + (["--profile-out", prof_path] if prof_path else []))
    rates = {"direct": [], "relay": []}
    cpu_per_call = []
    load = (lambda t: _h2load(t, a.seconds, a.concurrency)) if a.h2load else (
        lambda t: uvloop.run(_load(t, a.seconds, a.concurrency)))
    try:
        for _ in range(a.rounds):
            n = load(direct)
            rates["direct"].append(n / a.seconds)
            before = _cpu_seconds(relay.pid)
            n = load(proxied)
            cpu_per_call.append((_cpu_seconds(relay.pid) - before) / n * 1e6)
            rates["relay"].append(n / a.seconds)
    finally:
        relay.stdin.close()
        relay.wait(10)
        backend.kill()
    d, r = statistics.median(rates["direct"]), statistics.median(rates["relay"])
    print(f"{'h2load' if a.h2load else 'grpc.aio'} unary {len(PAYLOAD)} B, {a.concurrency} in flight, {a.rounds}x{a.seconds:.0f}s interleaved (medians)")
    print(f"  direct      {d:9.0f} calls/s   rounds {[round(x) for x in rates['direct']]}")
    print(f"  via relay   {r:9.0f} calls/s   rounds {[round(x) for x in rates['relay']]}")
    print(f"  ratio       {r / d:9.2f}x")
    print(f"  relay CPU   {statistics.median(cpu_per_call):9.0f} us/call ")
    if prof_path:
        import pstats
        pstats.Stats(prof_path).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
