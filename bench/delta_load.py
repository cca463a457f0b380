"""Simulated proxies on the delta discovery stream, for the control-plane scale
benchmark, run as a child process:

    python -m bench.delta_load --targets A,B,C --first 0 --count 2500 --route-configs 100 --reach 10

Proxy i connects to targets[i % len(targets)] and holds route config
r<i % route-configs>, whose `reach` clusters it subscribes to, as a scoped proxy
does (a real one learns them from the route config first). Each stream ACKs
every response at once and reads only its header fields (type_url,
system_version_info, nonce), skipping the resources unparsed, so thousands fit
in one process.

Protocol with the harness (lines on stdin, JSON lines on stdout):
- prints `{"ready": N, "ok": bool}` once every stream has ACKed one response of each type;
- `mark`: starts counting responses and bytes afresh; prints `{"marked": true}`;
- `wait TYPE_URL VERSION NAME`: waits until every stream whose scope holds NAME
  (a cluster, or a route config) has ACKed VERSION of TYPE_URL; prints the
  CLOCK_MONOTONIC time of each ACK (`acks`), `missing`, and since the mark the
  responses and bytes received by those streams and by all the others;
- end of input: closes the streams and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc

from bench.xds_load import _ident, string_fields
from meshapi.v1 import discovery_pb2
from meshgrpc.config import resources

METHOD = "/meshapi.v1.Discovery/DeltaResources"


def cluster_names(route_config: int, reach: int) -> list[str]:
    return [f"svc-{route_config * reach + k:04d}" for k in range(reach)]


def delta_header(data: bytes) -> tuple[str, str, str]:
    """(type_url, system_version_info, nonce) of a serialized DeltaDiscoveryResponse."""
    return string_fields(data, (4, 1, 5))


class SimulatedProxy:
    def __init__(self, node_id: str, route_config: int, reach: int) -> None:
        self.node_id = node_id
        self.route = f"r{route_config:03d}"
        self.clusters = cluster_names(route_config, reach)
        self.scope = set(self.clusters) | {self.route}
        self.acked: dict[tuple[str, str], float] = {}
        self.types_acked: set[str] = set()
        self.responses = self.bytes = 0
        self.error = ""

    def requests(self) -> list[bytes]:
        subscriptions = {resources.CLUSTER: self.clusters, resources.ENDPOINTS: self.clusters,
                         resources.ROUTES: [self.route]}
        out = []
        for i, (type_url, names) in enumerate(subscriptions.items()):
            request = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, resource_names_subscribe=names)
            if i == 0:
                request.node.id = self.node_id
            out.append(request.SerializeToString())
        return out

    async def run(self, channel: grpc.aio.Channel, on_ack) -> None:
        try:
            await self._stream(channel, on_ack)
        except grpc.aio.AioRpcError as e:
            self.error = f"{e.code().name}: {e.details()} {e.debug_error_string()[:300]}"
            on_ack()

    async def _stream(self, channel: grpc.aio.Channel, on_ack) -> None:
        call = channel.stream_stream(METHOD, request_serializer=_ident, response_deserializer=_ident)()
        for request in self.requests():
            await call.write(request)
        while (data := await call.read()) is not grpc.aio.EOF:
            type_url, version, nonce = delta_header(data)
            ack = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce)
            await call.write(ack.SerializeToString())
            self.acked[(type_url, version)] = time.monotonic()
            self.types_acked.add(type_url)
            self.responses += 1
            self.bytes += len(data)
            on_ack()


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.targets = args.targets.split(",")
        self.per_channel = args.per_channel
        self.proxies = [SimulatedProxy(f"sim-{i}", i % args.route_configs, args.reach)
                        for i in range(args.first, args.first + args.count)]
        self.changed = asyncio.Event()

    def ready(self) -> bool:
        return all(len(p.types_acked) == 3 or p.error for p in self.proxies)

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
        by_target: dict[int, list[SimulatedProxy]] = {}
        for i, proxy in enumerate(self.proxies):
            by_target.setdefault(i % len(self.targets), []).append(proxy)
        channels, tasks = [], []
        for t, proxies in by_target.items():
            for start in range(0, len(proxies), self.per_channel):
                channel = grpc.aio.insecure_channel(self.targets[t], options=[("grpc.use_local_subchannel_pool", 1)])
                channels.append(channel)
                tasks += [asyncio.create_task(p.run(channel, self.changed.set))
                          for p in proxies[start:start + self.per_channel]]
        try:
            await self.serve_commands()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for channel in channels:
                await channel.close()

    async def serve_commands(self) -> None:
        ok = await self.wait_until(self.ready, 600)
        errors = sorted({p.error for p in self.proxies if p.error})
        _say({"ready": sum(len(p.types_acked) == 3 for p in self.proxies), "ok": ok, "errors": errors[:5],
              "failed": sum(1 for p in self.proxies if p.error)})
        loop = asyncio.get_running_loop()
        while (line := (await loop.run_in_executor(None, sys.stdin.readline)).strip()):
            words = line.split()
            if words[0] == "mark":
                for p in self.proxies:
                    p.responses = p.bytes = 0
                _say({"marked": True})
            elif words[0] == "wait":
                _say(await self.wait(*words[1:]))

    async def wait(self, type_url: str, version: str, name: str) -> dict:
        key = (type_url, version)
        affected = [p for p in self.proxies if name in p.scope]
        others = [p for p in self.proxies if name not in p.scope]
        await self.wait_until(lambda: all(key in p.acked for p in affected), 60)
        acks = [p.acked[key] for p in affected if key in p.acked]
        return {"acks": acks, "missing": len(affected) - len(acks),
                "affected_responses": sum(p.responses for p in affected),
                "affected_bytes": sum(p.bytes for p in affected),
                "other_responses": sum(p.responses for p in others), "other_bytes": sum(p.bytes for p in others)}


def _say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", required=True, help="control-plane replicas, comma separated")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--route-configs", type=int, default=100)
    ap.add_argument("--reach", type=int, default=10, help="clusters each route config reaches")
    ap.add_argument("--per-channel", type=int, default=100, help="streams sharing one HTTP/2 connection")
    args = ap.parse_args()
    import uvloop
    uvloop.run(Fleet(args).run())


if __name__ == "__main__":
    main()
