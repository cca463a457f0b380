"""Load generators: h2load for unary calls (a gRPC frame as the request body) over
one connection or several, a grpcio sync client timing sequential unary calls
(latency as users see it), and a grpc.aio client for one bidirectional stream and
for sample calls whose grpc-status is checked. Each returns plain numbers;
nothing here starts servers.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass

import grpc

PAYLOAD = b"x" * 100
UNARY = "/echo.Echo/Unary"
STREAM = "/echo.Echo/Stream"
COUNT = "/echo.Echo/Count"


def _ident(data: bytes) -> bytes:
    return data


def grpc_frame(payload: bytes) -> bytes:
    """The gRPC length-prefixed message: uncompressed flag, 4-byte length, bytes.
    The echo service treats the payload as opaque bytes, so no protobuf wrapping is needed."""
    return b"\0" + struct.pack(">I", len(payload)) + payload


@dataclass
class H2loadResult:
    succeeded: int
    failed: int
    errored: int
    seconds: float
    latencies_us: list[int]  # per call, only when a log file was asked for

    @property
    def rate(self) -> float:
        return self.succeeded / self.seconds


def h2load(target: str, in_flight: int, *, calls: int | None = None, seconds: float | None = None,
           keep_latencies: bool = False, workdir: str | None = None, connections: int = 1) -> H2loadResult:
    """Unary echo calls, `in_flight` at once spread over `connections` connections:
    exactly `calls` of them (so every call completes and can be accounted for), or for
    `seconds` (h2load then cancels the calls still in flight at the end)."""
    if in_flight % connections:
        raise ValueError(f"{in_flight} calls in flight do not divide over {connections} connections")
    workdir = workdir or tempfile.gettempdir()
    body = os.path.join(workdir, "echo.grpc")
    with open(body, "wb") as f:
        f.write(grpc_frame(PAYLOAD))
    log_file = os.path.join(workdir, "h2load.log")
    args = ["h2load", f"http://{target}{UNARY}", "-c", str(connections), "-m", str(in_flight // connections),
            "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers"]
    args += ["-n", str(calls)] if calls is not None else ["-D", str(max(1, round(seconds)))]  # -D takes whole seconds
    if keep_latencies:
        _remove(log_file)  # h2load appends to its log file: start each run from an empty one
        args += ["--log-file", log_file]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600).stdout
    return _parse(out, _latencies(log_file) if keep_latencies else [])


def _parse(out: str, latencies: list[int]) -> H2loadResult:
    m = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if m is None:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    took = re.search(r"finished in ([\d.]+)(us|ms|s)", out)
    if took is None:
        raise RuntimeError(f"no duration in h2load output:\n{out}")
    elapsed = float(took[1]) / {"us": 1e6, "ms": 1e3, "s": 1}[took[2]]
    return H2loadResult(int(m[1]), int(m[2]), int(m[3]), elapsed, latencies)


def _latencies(log_file: str) -> list[int]:
    """Per-call durations (µs) from an h2load --log-file, which is then removed.

    Each row is `start (µs since epoch) TAB HTTP status TAB duration (µs)`. h2load
    opens the file with O_APPEND: a file reused across runs pools every earlier
    run's calls (all paths alike) into the next one's percentiles: every path then
    reports nearly the same p50 (a run reported +0.009 ms added). Reading it
    consumes it.
    """
    with open(log_file) as f:
        rows = [line.split("\t") for line in f if line.strip()]
    _remove(log_file)
    return [int(r[2]) for r in rows if r[1] == "200"]


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class GrpcLatency:
    """What users see at 1 in flight: a real grpcio (sync) client making sequential
    unary calls on one channel, each timed on the client. h2load's per-request time
    leaves out the client's own gRPC work and sends fewer frames (grpcio adds a
    stream and a connection WINDOW_UPDATE to every request), so both are reported."""

    def __init__(self, target: str, warmup: int = 200, timeout: float | None = None) -> None:
        self.channel = grpc.insecure_channel(target)
        self.call = self.channel.unary_unary(UNARY, request_serializer=_ident, response_deserializer=_ident)
        # Timed calls carry no deadline by default, like h2load's (a grpc-timeout
        # whose value changes every call costs the proxy a timer and HPACK work
        # that caching cannot save: ~40 us/call in bench.relay_cpu); the
        # warm-up has one, so a path that swallows calls fails here, not hangs.
        self.timeout = timeout
        t0 = time.perf_counter()
        for _ in range(warmup):  # connect, and let grpcio settle its windows
            self.call(PAYLOAD, timeout=5)
        self.rate = warmup / (time.perf_counter() - t0)  # calls/s, to size later runs

    def latencies_us(self, calls: int) -> list[float]:
        call, clock, timeout, out = self.call, time.perf_counter, self.timeout, []
        for _ in range(calls):
            t0 = clock()
            reply = call(PAYLOAD, timeout=timeout)
            out.append((clock() - t0) * 1e6)
            if reply != PAYLOAD:
                raise RuntimeError(f"echo returned {len(reply)} bytes, sent {len(PAYLOAD)}")
        return out

    def close(self) -> None:
        self.channel.close()


async def _stream_rate(target: str, seconds: float, window: int) -> float:
    """Messages/s echoed through one bidirectional stream, `window` messages in flight."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_stream(STREAM, request_serializer=_ident, response_deserializer=_ident)()
        for _ in range(window):
            await call.write(PAYLOAD)
        received, stop = 0, time.monotonic() + seconds
        start = time.monotonic()
        while time.monotonic() < stop:
            await call.read()
            received += 1
            await call.write(PAYLOAD)
        elapsed = time.monotonic() - start
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass
        if await call.code() != grpc.StatusCode.OK:
            raise RuntimeError(f"stream through {target} ended with {await call.code()}")
        return received / elapsed


def stream_rate(target: str, seconds: float, window: int = 16) -> float:
    return asyncio.run(_stream_rate(target, seconds, window))


async def _sample(target: str, calls: int) -> dict[str, int]:
    """Makes `calls` unary calls with a real gRPC client; counts final statuses by name."""
    statuses: dict[str, int] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        method = channel.unary_unary(UNARY, request_serializer=_ident, response_deserializer=_ident)
        for _ in range(calls):
            call = method(PAYLOAD, timeout=5)
            try:
                reply = await call
                code = grpc.StatusCode.OK if reply == PAYLOAD else grpc.StatusCode.DATA_LOSS
            except grpc.aio.AioRpcError as e:
                code = e.code()
            statuses[code.name] = statuses.get(code.name, 0) + 1
    return statuses


def sample_statuses(target: str, calls: int = 200) -> dict[str, int]:
    return asyncio.run(_sample(target, calls))


def backend_count(backend: str) -> int:
    """Unary calls the echo backend has answered (OK) so far."""
    with grpc.insecure_channel(backend) as channel:
        method = channel.unary_unary(COUNT, request_serializer=_ident, response_deserializer=_ident)
        return int(method(b"", timeout=5))
