"""Helpers for the control plane's integration tests: starting a real
`meshgrpc control-plane`, running CLI commands against it, and a raw discovery
stream client (in a thread) that ACKs or NACKs and records what it is sent."""

from __future__ import annotations

import asyncio
import os
import re
import threading

import grpc
from google.rpc import status_pb2

from meshapi.v1 import discovery_pb2, discovery_pb2_grpc, resources_pb2
from meshgrpc.config import resources
from tests.support.procs import Proc, credentials, meshgrpc, run_meshgrpc

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "examples", "mesh.yaml")


def start_control_plane(backing, *extra: str) -> tuple[Proc, str]:
    """A control plane on `backing`: tests/conftest.py's Backing (SQLite or etcd), or
    a data dir for the SQLite store."""
    store = backing.args if hasattr(backing, "args") else ("--data-dir", str(backing))
    mtls = () if "--insecure" in extra or "--listen-mtls" in extra else ("--listen-mtls", "127.0.0.1:0")
    proc = meshgrpc("--log-level", "INFO", "control-plane", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                    *store, *mtls, *extra)
    return proc, proc.address("control-plane")


VERSIONS = re.compile(r"^# versions: (.*)$", re.M)


def versions_of(get_output: str) -> dict[str, str]:
    """The versions line of `meshgrpc get`/`status` output, by short type name."""
    line = VERSIONS.search(get_output)
    assert line, get_output
    return dict(item.split("=", 1) for item in line[1].split())


def cli(address: str, *args: str):
    return run_meshgrpc(*args, "--control-plane", address)


class DiscoveryProbe:
    """A discovery stream client on its own thread and event loop. `nack` maps a
    type URL to the reason it rejects every response of that type with."""

    def __init__(self, target: str, node_id: str, type_urls=resources.TYPE_ORDER,
                 nack: dict[str, str] | None = None) -> None:
        self.target, self.node_id, self.type_urls = target, node_id, tuple(type_urls)
        self.nack = nack or {}
        self._lock = threading.Lock()
        self._responses: list[discovery_pb2.DiscoveryResponse] = []
        self._loop = asyncio.new_event_loop()
        self._call = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)

    def __enter__(self) -> DiscoveryProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(lambda: self._call and self._call.cancel())
        self._thread.join(10)

    def responses(self, type_url: str) -> list[discovery_pb2.DiscoveryResponse]:
        with self._lock:
            return [r for r in self._responses if r.type_url == type_url]

    def latest(self, type_url: str) -> list:
        """The resources of the last response of `type_url` (decoded), [] if none."""
        got = self.responses(type_url)
        return [resources.unpack(type_url, a) for a in got[-1].resources] if got else []

    async def _main(self) -> None:
        async with credentials(self.target).aio_channel(self.target) as channel:
            self._call = discovery_pb2_grpc.DiscoveryStub(channel).StreamResources()
            node = discovery_pb2.Node(id=self.node_id)
            for type_url in self.type_urls:
                await self._call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=type_url))
            acked = {t: "" for t in self.type_urls}
            try:
                while (response := await self._call.read()) is not grpc.aio.EOF:
                    with self._lock:
                        self._responses.append(response)
                    await self._call.write(self._answer(response, acked))
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass

    def _answer(self, response, acked: dict[str, str]) -> discovery_pb2.DiscoveryRequest:
        reason = self.nack.get(response.type_url)
        if reason is None:
            acked[response.type_url] = response.version_info
            return discovery_pb2.DiscoveryRequest(type_url=response.type_url, version_info=response.version_info,
                                                  response_nonce=response.nonce)
        return discovery_pb2.DiscoveryRequest(
            type_url=response.type_url, version_info=acked[response.type_url], response_nonce=response.nonce,
            error_detail=status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=reason))


def endpoint_addresses(endpoint_sets: list[resources_pb2.EndpointSet], cluster: str) -> set[str]:
    return {e.address for s in endpoint_sets if s.cluster == cluster for e in s.endpoints}
