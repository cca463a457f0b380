"""A proxyless gRPC client for integration tests, in its own process (grpcio reads
GRPC_XDS_BOOTSTRAP once per process):

    GRPC_XDS_BOOTSTRAP=FILE python -m tests.support.xds_client --target xds:///greeter.mesh \\
        --out calls.log [--threads 2] [--tag-every 2] [--calls N] [--duration S]

Each thread calls TestService.UnaryCall back to back on one channel and appends
one line per call to --out: `START END OK BACKEND TAGGED` or `START END ERR CODE
TAGGED` (START, END: time.monotonic(), shared by every process on the machine;
BACKEND: the answering endpoint's x-backend header; TAGGED: 1 when the call
carried `x-canary: true`, which every --tag-every'th call does). Prints
`xds-client started` once its first call ended, and stops after --calls calls
or --duration seconds (at most 120), or on SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import threading
import time

import grpc

from meshtest.interop import messages_pb2, test_pb2_grpc

TAG = ("x-canary", "true")
MAX_DURATION = 120.0


class Calls:
    """Runs the calls and writes their outcomes; thread-safe."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._out = open(args.out, "a", buffering=1)
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._stop = threading.Event()
        self.first = threading.Event()
        self._deadline = time.monotonic() + min(args.duration or MAX_DURATION, MAX_DURATION)

    def stop(self, *_signal) -> None:
        self._stop.set()

    def run_thread(self) -> None:
        with grpc.insecure_channel(self.args.target) as channel:
            stub = test_pb2_grpc.TestServiceStub(channel)
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                n = next(self._counter)
                if self.args.calls and n >= self.args.calls:
                    return
                self._record(*self._call(stub, n))

    def _call(self, stub, n: int) -> tuple[float, float, str, bool]:
        tagged = bool(self.args.tag_every) and n % self.args.tag_every == 0
        started = time.monotonic()
        try:
            _, call = stub.UnaryCall.with_call(messages_pb2.SimpleRequest(response_size=10),
                                              timeout=self.args.timeout, metadata=[TAG] if tagged else None)
            outcome = "OK " + (dict(call.initial_metadata()).get("x-backend") or "-")
        except grpc.RpcError as e:
            outcome = "ERR " + e.code().name
        return started, time.monotonic(), outcome, tagged

    def _record(self, started: float, ended: float, outcome: str, tagged: bool) -> None:
        with self._lock:
            self._out.write(f"{started:.6f} {ended:.6f} {outcome} {int(tagged)}\n")
        self.first.set()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag-every", type=int, default=0)
    ap.add_argument("--calls", type=int, default=0, help="stop after this many calls (0: no bound)")
    ap.add_argument("--duration", type=float, default=0.0, help=f"stop after this long (at most {MAX_DURATION:g}s)")
    ap.add_argument("--timeout", type=float, default=5.0, help="deadline of each call")
    calls = Calls(ap.parse_args(argv))
    signal.signal(signal.SIGTERM, calls.stop)
    threads = [threading.Thread(target=calls.run_thread, daemon=True) for _ in range(calls.args.threads)]
    for t in threads:
        t.start()
    if calls.first.wait(MAX_DURATION):
        print("xds-client started", flush=True)
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
