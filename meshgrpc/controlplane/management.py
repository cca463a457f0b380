"""The Management gRPC service: apply, get, delete, proxy status, registration,
and (identity_service.py) certificates and tokens.

A thin layer over the controller, the registry and the snapshot cache. meshgrpc
errors become gRPC statuses in one place, `_mesh_errors`, using each error's
`code` and message (a ConfigError's message lists every field error). Who may
call what is decided before a handler runs (access.py); a workload may register
only into its own service's cluster.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import grpc

from meshapi.v1 import management_pb2, management_pb2_grpc, resources_pb2
from meshgrpc.config import resources
from meshgrpc.controlplane.access import WORKLOAD, caller
from meshgrpc.config.specs import duration
from meshgrpc.controlplane.controller import Controller
from meshgrpc.controlplane.guard import emptying_problem
from meshgrpc.controlplane.publisher import Publisher
from meshgrpc.controlplane.registry import Registry
from meshgrpc.controlplane.state import filter_mesh
from meshgrpc.controlplane.identity_service import IdentityService
from meshgrpc.errors import ConfigError, FieldError, MeshError, NotFound, PermissionDenied

log = logging.getLogger(__name__)


def _mesh_errors(handler):
    """Reports a MeshError raised by `handler` as its gRPC status and message."""
    @functools.wraps(handler)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await handler(self, request, context)
        except MeshError as e:
            await context.abort(e.code, str(e))
    return wrapper


class ManagementServicer(management_pb2_grpc.ManagementServicer):
    def __init__(self, controller: Controller, publisher: Publisher, registry: Registry, cache, discovery,
                 identity: IdentityService | None = None) -> None:
        """`discovery`: the discovery servers whose connected nodes ProxyStatus lists
        (each has `proxy_statuses()`): the sidecars' and the proxyless clients'."""
        self._identity = identity or IdentityService(None)
        self._controller = controller
        self._publisher = publisher
        self._registry = registry
        self._cache = cache
        self._discovery = discovery

    def add_to(self, server: grpc.aio.Server) -> None:
        management_pb2_grpc.add_ManagementServicer_to_server(self, server)

    @_mesh_errors
    async def Apply(self, request: management_pb2.ApplyRequest, context) -> management_pb2.ApplyResponse:
        guard = None if request.allow_empty else emptying_problem
        changes = await self._controller.apply(request.config, request.replace, request.dry_run, guard=guard)
        self._publisher.flush()
        return management_pb2.ApplyResponse(changes=changes, versions=self._versions())

    @_mesh_errors
    async def Get(self, request: management_pb2.GetRequest, context) -> management_pb2.GetResponse:
        type_url = _type_of(request.kind) if request.kind else None
        served = self._served()
        found = filter_mesh(served, type_url, request.name)
        if request.name and not any(getattr(found, f) for f in resources.MESH_FIELD.values()):
            raise NotFound(f"no resource named {request.name!r}")
        return management_pb2.GetResponse(config=found, versions=self._versions())

    @_mesh_errors
    async def Delete(self, request: management_pb2.DeleteRequest, context) -> management_pb2.DeleteResponse:
        if not request.name:
            raise ConfigError([FieldError("name", "required")])
        changes = await self._controller.delete(_type_of(request.kind), request.name, request.dry_run)
        self._publisher.flush()
        return management_pb2.DeleteResponse(changes=changes)

    @_mesh_errors
    async def ProxyStatus(self, request, context) -> management_pb2.ProxyStatusResponse:
        proxies = [p for source in self._discovery for p in source.proxy_statuses()]
        return management_pb2.ProxyStatusResponse(proxies=proxies, versions=self._versions())

    @_mesh_errors
    async def Register(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        """First message: the instance (and the lease to resume, if any); then one
        heartbeat per message. The lease ends with the stream, or when no heartbeat
        arrives within the TTL."""
        first = await self._read(context)
        if first is None:
            return
        if not first.HasField("instance"):
            raise ConfigError([FieldError("instance", "required in the first message")])
        _check_own_cluster(first.instance.cluster)
        lease = await self._registry.register(first.instance, resume=first.lease_id)
        resumed = " (lease resumed)" if first.lease_id and lease.token == first.lease_id else ""
        log.info("registered %s in cluster %r%s", first.instance.address, first.instance.cluster, resumed)
        try:
            reply = management_pb2.RegisterResponse(lease_ttl=duration(self._registry.ttl), lease_id=lease.token)
            await context.write(reply)
            while await self._read(context) is not None:
                await self._registry.heartbeat(lease)
                await context.write(reply)
        finally:
            # Shielded: a stream cancelled by its client still unregisters.
            await asyncio.shield(self._registry.release(lease))

    @_mesh_errors
    async def IssueCertificate(self, request, context) -> management_pb2.IssueCertificateResponse:
        return self._identity.issue_certificate(request, caller())

    @_mesh_errors
    async def CreateToken(self, request, context) -> management_pb2.CreateTokenResponse:
        return self._identity.create_token(request)

    @_mesh_errors
    async def RevokeToken(self, request, context) -> management_pb2.RevokeTokenResponse:
        return self._identity.revoke_token(request)

    @_mesh_errors
    async def ListTokens(self, request, context) -> management_pb2.ListTokensResponse:
        return self._identity.list_tokens()

    async def _read(self, context: grpc.aio.ServicerContext) -> management_pb2.RegisterRequest | None:
        """The next message, None at the end of the stream; NotFound after a silent TTL."""
        try:
            message = await asyncio.wait_for(context.read(), timeout=self._registry.ttl)
        except TimeoutError:
            raise NotFound(f"no heartbeat within the lease TTL ({self._registry.ttl}s)") from None
        return None if message is grpc.aio.EOF else message

    def _served(self) -> resources_pb2.MeshConfig:
        snapshot = self._cache.current
        mesh = resources_pb2.MeshConfig()
        if snapshot is None:
            return mesh
        for type_url in resources.MESH_TYPES:
            items = snapshot.resources(type_url)
            getattr(mesh, resources.MESH_FIELD[type_url]).extend(items[n] for n in sorted(items))
        return mesh

    def _versions(self) -> dict[str, str]:
        return {t: tv.version for t, tv in self._publisher.versions.items()}


def _check_own_cluster(cluster: str) -> None:
    """A workload registers only into the cluster of its own service (admins anywhere)."""
    principal = caller()
    if principal.role == WORKLOAD and cluster != principal.service:
        raise PermissionDenied(f"a workload of service {principal.service} may register only into cluster "
                               f"{principal.service!r}, not {cluster!r}")


def _type_of(kind: int) -> str:
    if kind not in resources.TYPE_OF_KIND:
        raise ConfigError([FieldError("kind", "required: CLUSTER, ENDPOINTS, ROUTE, LISTENER or AUTHORIZATION_POLICY")])
    return resources.TYPE_OF_KIND[kind]

