"""Simulated proxies for the control-plane scale benchmark, run as a child process:
`python -m bench.xds_load --target HOST:PORT --streams N --prefix P`.

Each simulated proxy is one raw grpc.aio discovery stream that subscribes to
every type like a real proxy and ACKs each response, and does nothing else: it
reads only type_url, version and nonce from the response bytes (skipping the
resources unparsed), so a thousand of them fit in one process.

Protocol with the harness (lines on stdin/stdout): the process prints
`{"ready": N}` once every stream has ACKed a version of each type; on
`wait TYPE_URL VERSION` it prints `{"acks": [...]}` with the CLOCK_MONOTONIC
time at which each stream ACKed that version (`missing` counts streams that did
not within the deadline); on `quit` or end of input it closes its streams and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc

from meshapi.v1 import discovery_pb2
from meshgrpc.config import resources

METHOD = "/meshapi.v1.Discovery/StreamResources"
SUBSCRIPTIONS = {resources.CLUSTER: [], resources.ENDPOINTS: [], resources.ROUTES: ["default"]}


def _ident(data: bytes) -> bytes:
    return data


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[i]
        result |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return result, i
        shift += 7


def string_fields(data: bytes, numbers: tuple[int, ...]) -> tuple[str, ...]:
    """The top-level string fields `numbers` of a serialized message whose fields
    are all length-delimited (discovery responses), skipping the others unparsed."""
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        length, i = _varint(data, i)
        if key >> 3 in numbers:
            found[key >> 3] = data[i:i + length]
        i += length
    return tuple(found.get(n, b"").decode() for n in numbers)


def response_header(data: bytes) -> tuple[str, str, str]:
    """(type_url, version_info, nonce) of a serialized DiscoveryResponse."""
    return string_fields(data, (1, 2, 3))


class SimulatedProxy:
    """One discovery stream; `acked[(type_url, version)]` = when it was ACKed."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.acked: dict[tuple[str, str], float] = {}
        self.types_acked: set[str] = set()

    async def run(self, channel: grpc.aio.Channel, on_ack) -> None:
        call = channel.stream_stream(METHOD, request_serializer=_ident, response_deserializer=_ident)()
        for i, (type_url, names) in enumerate(SUBSCRIPTIONS.items()):
            request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
            if i == 0:
                request.node.id = self.node_id
            await call.write(request.SerializeToString())
        while (data := await call.read()) is not grpc.aio.EOF:
            type_url, version, nonce = response_header(data)
            ack = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=version, response_nonce=nonce,
                                                 resource_names=SUBSCRIPTIONS[type_url])
            await call.write(ack.SerializeToString())
            self.acked[(type_url, version)] = time.monotonic()
            self.types_acked.add(type_url)
            on_ack()


class Fleet:
    def __init__(self, target: str, streams: int, per_channel: int, prefix: str) -> None:
        self.target, self.per_channel = target, per_channel
        self.proxies = [SimulatedProxy(f"{prefix}-{i}") for i in range(streams)]
        self.changed = asyncio.Event()

    def ready(self) -> bool:
        return all(len(p.types_acked) == len(SUBSCRIPTIONS) for p in self.proxies)

    async def wait_until(self, predicate, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        channels = [grpc.aio.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(0, len(self.proxies), self.per_channel)]
        tasks = [asyncio.create_task(p.run(channels[i // self.per_channel], self.changed.set))
                 for i, p in enumerate(self.proxies)]
        try:
            await self.serve_commands()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in channels:
                await c.close()

    async def serve_commands(self) -> None:
        ok = await self.wait_until(self.ready, 120)
        _say({"ready": sum(len(p.types_acked) == len(SUBSCRIPTIONS) for p in self.proxies), "ok": ok})
        loop = asyncio.get_running_loop()
        while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip() not in ("", "quit"):
            _, type_url, version = line.split()
            key = (type_url, version)
            await self.wait_until(lambda: all(key in p.acked for p in self.proxies), 60)
            acks = [p.acked[key] for p in self.proxies if key in p.acked]
            _say({"acks": acks, "missing": len(self.proxies) - len(acks)})


def _say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--per-channel", type=int, default=50, help="streams sharing one HTTP/2 connection")
    ap.add_argument("--prefix", default="sim")
    a = ap.parse_args()
    import uvloop
    uvloop.run(Fleet(a.target, a.streams, a.per_channel, a.prefix).run())


if __name__ == "__main__":
    main()
