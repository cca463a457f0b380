"""DiscoveryServer: the discovery service (meshapi.v1.Discovery) on a gRPC
server (the control plane's own, grpcwire/server.py, or grpc.aio: the handlers
are the same), serving a SnapshotCache in both xDS variants: state of the world
(StreamResources, kept for older proxies) and incremental (DeltaResources). The
same server, given another DiscoveryProtocol, service and method (and no delta
method), serves proxyless gRPC clients Envoy's ADS (meshgrpc/proxyless/server.py).

The handlers are registered by hand so that their response serializer passes
bytes through: each response is a cached body shared by all streams plus a
per-stream nonce field (wire.py), so a version is serialized once however many
proxies receive it. Per-stream logic lives in session.py and variants.py; this
module adapts the server's call context to it, reports the connected proxies'
status and counts what it sends.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Protocol

import grpc

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.xds import wire
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.claims import ClaimRefused, NodeClaims
from meshgrpc.xds.scope import ScopedViews, mesh_names
from meshgrpc.xds.ordering import ResponsePlan
from meshgrpc.xds.protocol import MESH, DiscoveryProtocol
from meshgrpc.xds.session import Session, StreamError
from meshgrpc.xds.variants import Delta, Sotw

log = logging.getLogger(__name__)

SERVICE = "meshapi.v1.Discovery"
METHOD = "StreamResources"
DELTA_METHOD = "DeltaResources"


class _GrpcStreamIO:
    """A server stream's context (grpc.aio's or grpcwire's) as a session's StreamIO."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    async def read(self):
        request = await self._context.read()
        return None if request is grpc.aio.EOF else request

    async def write(self, data: bytes) -> None:
        await self._context.write(data)


def _passthrough(data: bytes) -> bytes:
    return data


class DiscoveryObserver(Protocol):
    """Hears what the streams do (the control plane's metrics). Called on the event
    loop thread; each call only counts or records."""

    def sent(self, server: DiscoveryServer, session: Session, type_url: str, size: int) -> None:
        """A response of `size` bytes went out."""

    def answered(self, server: DiscoveryServer, session: Session, type_url: str, outcome: str) -> None:
        """The node answered its latest response of `type_url`: "ack" or "nack"."""

    def closed(self, server: DiscoveryServer, session: Session) -> None:
        """The stream ended."""


class DiscoveryServer:
    """Serves `cache` to every connected proxy. `clock` gives wall-clock seconds
    (for connected_since); the timeouts bound each idle wait and each read/write.

    Who is on a stream: `caller()` returns the stream's authenticated identity
    (controlplane/access.py: a Principal with `role`, `service` and `key()`; None
    when nothing is checked). A workload's stream carries only what its service
    may see (scope.py); a node id belongs to one identity at a time (claims.py,
    `claims` shared with the other discovery server on the port).
    `observer` (optional) hears of each response sent, answer read and stream ended."""

    def __init__(self, cache: SnapshotCache, *, clock: Callable[[], float] = time.time,
                 idle_timeout: float = 30.0, io_timeout: float = 30.0, body_cache_size: int = 1024,
                 protocol: DiscoveryProtocol = MESH, service: str = SERVICE, method: str = METHOD,
                 delta_method: str | None = DELTA_METHOD, caller: Callable[[], object | None] = lambda: None,
                 claims: NodeClaims | None = None, views: ScopedViews | None = None,
                 observer: DiscoveryObserver | None = None) -> None:
        self.cache = cache
        self.observer = observer
        self._caller = caller
        self.claims = claims if claims is not None else NodeClaims()
        self._views = views or ScopedViews(lambda: cache.current, mesh_names, wire.MESH_RESPONSE)
        self.protocol, self.service, self.method, self.delta_method = protocol, service, method, delta_method
        self._clock = clock
        self._idle_timeout, self._io_timeout = idle_timeout, io_timeout
        self._bodies = wire.BodyCache(body_cache_size)
        self._sessions: set[Session] = set()
        self._sent: collections.Counter[str] = collections.Counter()   # resources sent per type URL

    def add_to(self, server: grpc.aio.Server) -> None:
        methods = {self.method: grpc.stream_stream_rpc_method_handler(
            self._sotw, request_deserializer=self.protocol.request_class.FromString,
            response_serializer=_passthrough)}
        if self.delta_method is not None:
            methods[self.delta_method] = grpc.stream_stream_rpc_method_handler(
                self._delta, request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_passthrough)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(self.service, methods),))

    async def _sotw(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        await self._stream(context, Sotw(self.protocol))

    async def _delta(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        await self._stream(context, Delta())

    async def _stream(self, context: grpc.aio.ServicerContext, variant) -> None:
        principal = self._caller()
        session = Session(_GrpcStreamIO(context), self.cache, self._bodies, peer=context.peer(),
                          connected_since=self._clock(), idle_timeout=self._idle_timeout,
                          io_timeout=self._io_timeout, variant=variant, sent=self._sent, on_sent=self.on_sent,
                          admit=self._admission(principal), view=self._scope(principal),
                          on_answer=self._on_answer)
        self._sessions.add(session)
        try:
            await session.run(lambda: context.send_initial_metadata(()))
        except StreamError as e:
            log.info("discovery stream from %s (node %r) ended: %s", session.peer,
                     session.node.id if session.node else "", e.message)
            await context.abort(e.code, e.message)
        finally:
            self._sessions.discard(session)
            if self.observer is not None:
                self.observer.closed(self, session)

    def _admission(self, principal):
        if principal is None:
            return None
        identity = principal.key()

        def admit(node_id: str):
            try:
                return self.claims.claim(node_id, identity)
            except ClaimRefused as e:
                raise StreamError(grpc.StatusCode.PERMISSION_DENIED, str(e)) from None
        return admit

    def _scope(self, principal):
        service = getattr(principal, "service", "")
        if not service:
            return None   # operators see everything
        return lambda snapshot: self._views.view(snapshot, service)

    def on_sent(self, session: Session, plan: ResponsePlan, size: int) -> None:
        """Called after each response a stream took; subclasses extending it call it too."""
        if self.observer is not None:
            self.observer.sent(self, session, plan.type_url, size)

    def _on_answer(self, session: Session, type_url: str, outcome: str) -> None:
        if self.observer is not None:
            self.observer.answered(self, session, type_url, outcome)

    def sessions(self) -> list[Session]:
        """The connected streams that have identified their node."""
        return [s for s in self._sessions if s.node is not None]

    def proxy_statuses(self) -> list[management_pb2.ProxyStatus]:
        """One status per connected stream that has identified its node."""
        return [s.status() for s in self.sessions()]

    def resources_sent(self, type_url: str) -> int:
        """Resources of `type_url` sent so far, on every stream."""
        return self._sent[type_url]

    @property
    def stream_count(self) -> int:
        return len(self._sessions)
