"""What the access log costs per call (part of `make bench`; also
`python -m bench.access_log_cost [--calls N]`).

Runs AccessLog at sample 1.0 into a file, the way the relay will: `log()` on an
event loop for N records (records built beforehand, as the relay fills one from
the call it already has), the writer thread encoding and writing them. Reports
the loop thread's time per `log()` call (what the call path pays) and the whole
process's CPU per line, writer thread included (what the proxy pays).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

from meshgrpc.proxy.access_log import AccessLog, AccessRecord


def _records(n: int) -> list[AccessRecord]:
    return [AccessRecord(time=1.7e9 + i * 1e-4, request_id=f"3f2c1a9e-5b7d-4c1e-9a8b-{i:012x}",
                         trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", route="default",
                         cluster="greeter", endpoint="127.0.0.1:50051", path="/helloworld.Greeter/SayHello",
                         grpc_status=0, http_status=200, duration_s=0.000412, bytes_in=15, bytes_out=32, attempts=1)
            for i in range(n)]


def measure(calls: int = 100_000) -> dict:
    records = _records(calls)
    with tempfile.TemporaryDirectory(prefix="meshgrpc-access-log-") as work:
        path = os.path.join(work, "access.log")
        log = AccessLog(path, capacity=calls)
        log.start()
        cpu0, wall0 = time.process_time(), time.perf_counter()

        async def drive() -> float:
            spent = 0.0
            for i in range(0, calls, 500):
                t = time.perf_counter()
                for record in records[i:i + 500]:
                    log.log(record)
                spent += time.perf_counter() - t
                await asyncio.sleep(0)  # let the loop turn, as between calls
            return spent

        on_loop = asyncio.run(drive())
        drained = log.stop(timeout=60)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        size = os.path.getsize(path)
    return {"calls": calls, "written": log.written, "dropped": log.dropped, "drained": drained,
            "log_call_us": on_loop / calls * 1e6, "cpu_us_per_line": cpu / calls * 1e6,
            "bytes_per_line": size / max(1, log.written), "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.access_log_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100_000)
    print(json.dumps(measure(ap.parse_args().calls), indent=2))


if __name__ == "__main__":
    main()
