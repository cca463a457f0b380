"""The proxyless path beside direct calls and the sidecar, measured with the same
grpcio client on all three (h2load cannot resolve `xds:///`, so the h2load
table's numbers are not comparable with these):

    direct     grpcio -> echo backend
    sidecar    grpcio -> meshgrpc proxy -> echo backend
    proxyless  grpcio `xds:///echo.mesh` (GRPC_XDS_BOOTSTRAP from `meshgrpc bootstrap`) -> echo backend

Each measurement is a fresh client process (`python -m bench.proxyless client
...`, grpc.aio, one channel): a warm-up, then `in_flight` concurrent unary calls
for `seconds` (calls/s and the client's own CPU per call), then sequential calls
(p50 and p99 at 1 in flight). Paths run in interleaved rounds, the order
rotating, and the summary is the median of the rounds, with each path's ratio
to direct taken per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import grpc

from bench.load import PAYLOAD, UNARY
from tests.support.procs import REPO, run_meshgrpc

LISTENER = "echo.mesh"
PATHS = ("direct", "sidecar", "proxyless")


def with_listener(mesh: dict) -> dict:
    """The bench mesh plus the listener proxyless clients dial."""
    return {**mesh, "listeners": [{"name": LISTENER, "route_config": "default"}]}


def _ident(data: bytes) -> bytes:
    return data


# ---------------------------------------------------------------- the client process

async def _measure(target: str, in_flight: int, seconds: float, latency_calls: int) -> dict:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(UNARY, request_serializer=_ident, response_deserializer=_ident)
        for _ in range(200):  # connect (and, for xds:///, resolve) and settle the windows
            await call(PAYLOAD, timeout=10)
        done, stop = 0, time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                if await call(PAYLOAD) != PAYLOAD:
                    raise RuntimeError("echo returned other bytes")
                done += 1
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        latencies = []
        for _ in range(latency_calls):
            t = time.perf_counter()
            await call(PAYLOAD)
            latencies.append((time.perf_counter() - t) * 1e3)
    latencies.sort()
    return {"calls_per_s": done / elapsed, "client_cpu_us_per_call": cpu / max(1, done) * 1e6,
            "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(len(latencies) * 0.99) - 1]}


def client_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.proxyless client")
    ap.add_argument("--target", required=True)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--latency-calls", type=int, default=1000)
    a = ap.parse_args(argv)
    print(json.dumps(asyncio.run(_measure(a.target, a.in_flight, a.seconds, a.latency_calls))), flush=True)
    return 0


# ---------------------------------------------------------------- the comparison

def bootstrap_file(cp_address: str, workdir: str) -> str:
    path = os.path.join(workdir, "bench-bootstrap.json")
    result = run_meshgrpc("bootstrap", "--node-id", "bench-proxyless", "--control-plane", cp_address, "-o", path)
    if result.returncode != 0:
        raise RuntimeError(f"meshgrpc bootstrap failed: {result.stderr}")
    return path


def _run_client(target: str, bootstrap: str, in_flight: int, seconds: float, latency_calls: int) -> dict:
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": bootstrap, "PYTHONPATH": REPO}
    args = [sys.executable, "-m", "bench.proxyless", "client", "--target", target, "--in-flight", str(in_flight),
            "--seconds", str(seconds), "--latency-calls", str(latency_calls)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=seconds * 4 + 120)
    if done.returncode != 0:
        raise RuntimeError(f"bench client for {target} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(targets: dict[str, str], cp_address: str, workdir: str, rounds: int, in_flight: int, seconds: float,
            latency_calls: int) -> dict:
    """`targets`: direct and sidecar addresses; the proxyless path dials xds:///echo.mesh."""
    targets = {**targets, "proxyless": f"xds:///{LISTENER}"}
    bootstrap = bootstrap_file(cp_address, workdir)
    runs: list[dict[str, dict]] = []
    for r in range(rounds):
        order = PATHS[r % len(PATHS):] + PATHS[:r % len(PATHS)]
        print(f"proxyless round {r + 1}/{rounds}: {' '.join(order)}", flush=True)
        runs.append({})
        for name in order:
            runs[-1][name] = got = _run_client(targets[name], bootstrap, in_flight, seconds, latency_calls)
            print(f"  {name:9s} {got['calls_per_s']:8.0f} calls/s  p50 {got['p50_ms']:.3f} ms  "
                  f"client cpu {got['client_cpu_us_per_call']:.0f} µs/call", flush=True)
    return summarise(runs, {"rounds": rounds, "in_flight": in_flight, "seconds": seconds,
                            "latency_calls": latency_calls})


def summarise(runs: list[dict[str, dict]], config: dict) -> dict:
    def median(name: str, key: str) -> float:
        return statistics.median(run[name][key] for run in runs)
    paths = {}
    for name in PATHS:
        paths[name] = {key: median(name, key) for key in ("calls_per_s", "client_cpu_us_per_call", "p50_ms", "p99_ms")}
        paths[name]["ratio"] = statistics.median(run[name]["calls_per_s"] / run["direct"]["calls_per_s"]
                                                 for run in runs)
        paths[name]["added_p50_ms"] = statistics.median(run[name]["p50_ms"] - run["direct"]["p50_ms"] for run in runs)
    return {"config": config, "paths": paths, "rounds": runs}


if __name__ == "__main__":
    if sys.argv[1:2] != ["client"]:
        sys.exit("usage: python -m bench.proxyless client --target T [--in-flight N] [--seconds S]")
    sys.exit(client_main(sys.argv[2:]))
