"""The demo's proxyless client: helloworld calls on `xds:///greeter.mesh` made by
grpcio's own xDS client (GRPC_XDS_BOOTSTRAP names the demo's control plane), in a
process of its own since grpcio reads the bootstrap once per process.

    GRPC_XDS_BOOTSTRAP=FILE python -m meshgrpc.demo_proxyless --rate 100 --out calls.log

Each call is appended to --out as a line (demo_view.CallRecord.to_line) that the
demo reads into the same live table as the sidecar's calls. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from meshgrpc.demo import drive
from meshgrpc.demo_view import CallRecord


class FileLog:
    """The CallLog interface `drive` needs, writing each record as a line."""

    def __init__(self, path: str) -> None:
        self._out = open(path, "a", buffering=1)

    def add(self, record: CallRecord) -> None:
        self._out.write(record.to_line() + "\n")


async def _main(target: str, rate: float, out: str) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await drive(target, FileLog(out), rate, stop)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m meshgrpc.demo_proxyless", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="xds:///greeter.mesh")
    ap.add_argument("--rate", type=float, default=100.0, help="calls started per second")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    asyncio.run(_main(a.target, a.rate, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
