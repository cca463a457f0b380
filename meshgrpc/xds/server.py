"""DiscoveryServer: the discovery service (meshapi.v1.Discovery/StreamResources)
on grpc.aio, serving a SnapshotCache with xDS state-of-the-world semantics. The
same server, given another DiscoveryProtocol, service and method, serves proxyless gRPC
clients Envoy's ADS (meshgrpc/proxyless/server.py).

The handler is registered by hand so that its response serializer passes bytes
through: each response is a cached body shared by all streams plus a per-stream
nonce field (wire.py), so a version is serialized once however many proxies
receive it. Per-stream logic lives in session.py; this module adapts grpc.aio to
it and reports the connected proxies' status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.xds import wire
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.ordering import ResponsePlan
from meshgrpc.xds.protocol import MESH, DiscoveryProtocol
from meshgrpc.xds.session import Session, StreamError

log = logging.getLogger(__name__)

SERVICE = "meshapi.v1.Discovery"
METHOD = "StreamResources"


class _GrpcStreamIO:
    """grpc.aio server stream as a session's StreamIO."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    async def read(self) -> discovery_pb2.DiscoveryRequest | None:
        request = await self._context.read()
        return None if request is grpc.aio.EOF else request

    async def write(self, data: bytes) -> None:
        await self._context.write(data)


def _passthrough(data: bytes) -> bytes:
    return data


class DiscoveryServer:
    """Serves `cache` to every connected proxy. `clock` gives wall-clock seconds
    (for connected_since); the timeouts bound each idle wait and each read/write."""

    def __init__(self, cache: SnapshotCache, *, clock: Callable[[], float] = time.time,
                 idle_timeout: float = 30.0, io_timeout: float = 30.0, body_cache_size: int = 256,
                 protocol: DiscoveryProtocol = MESH, service: str = SERVICE, method: str = METHOD) -> None:
        self.cache = cache
        self.protocol, self.service, self.method = protocol, service, method
        self._clock = clock
        self._idle_timeout, self._io_timeout = idle_timeout, io_timeout
        self._bodies = wire.BodyCache(body_cache_size)
        self._sessions: set[Session] = set()

    def add_to(self, server: grpc.aio.Server) -> None:
        handler = grpc.stream_stream_rpc_method_handler(
            self._stream, request_deserializer=self.protocol.request_class.FromString,
            response_serializer=_passthrough)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(self.service, {self.method: handler}),))

    async def _stream(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        session = Session(_GrpcStreamIO(context), self.cache, self._bodies, peer=context.peer(),
                          connected_since=self._clock(), idle_timeout=self._idle_timeout,
                          io_timeout=self._io_timeout, protocol=self.protocol, on_sent=self.on_sent)
        self._sessions.add(session)
        try:
            await session.run(lambda: context.send_initial_metadata(()))
        except StreamError as e:
            log.info("discovery stream from %s (node %r) ended: %s", session.peer,
                     session.node.id if session.node else "", e.message)
            await context.abort(e.code, e.message)
        finally:
            self._sessions.discard(session)

    def on_sent(self, session: Session, plan: ResponsePlan) -> None:
        """Called after each response a stream took; a hook for subclasses."""

    def proxy_statuses(self) -> list[management_pb2.ProxyStatus]:
        """One status per connected stream that has identified its node."""
        current = self.cache.current
        versions = current.versions() if current else {}
        return [s.status(versions) for s in self._sessions if s.node is not None]

    @property
    def stream_count(self) -> int:
        return len(self._sessions)
