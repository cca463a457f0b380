"""EtcdStore: the mesh's state in etcd, shared by several control-plane replicas
(the key layout and how versions derive from revisions: etcd_mirror.py).

Decisions:
- Every commit is one etcd transaction. A configuration commit (apply, delete,
  config file) compares P/head's mod revision with the one its plan was based on
  (compare-and-swap): of two replicas committing at once, one fails the compare
  and gets Conflict (the controller rebases or aborts). A registration commit only
  compares that its cluster exists, so registrations on different replicas never
  conflict with each other; deleting a cluster deletes every registration under it.
  A transaction retried after an ambiguous failure (the member died before
  answering) recognises its own earlier success by the commit id it wrote to P/head.
- Registrations are etcd leases: the key dies with its lease, so a replica that
  dies takes no registration with it until the lease expires. When that happens
  a replica versions the change (a compare-and-swap on P/heads/endpoints).
- Each replica mirrors the prefix: loaded once, then kept by a watch that resumes
  from the last revision seen (a reload when etcd compacted that revision away).
  A commit returns once the mirror has reached its revision, so the versions an
  apply reports are the ones being served.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable

import grpc

from etcdapi import rpc_pb2
from meshgrpc.config import resources
from meshgrpc.controlplane.etcd_client import Compacted, EtcdClient, PrefixWatch, prefix_end
from meshgrpc.controlplane.etcd_mirror import Keys, Mirror, fingerprint_bytes
from meshgrpc.controlplane.state import MeshState
from meshgrpc.controlplane.store import Commit, Conflict, Stored
from meshgrpc.errors import FailedPrecondition, Unavailable
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

MIN_LEASE_TTL = 2   # seconds; etcd raises shorter TTLs to about its election timeout anyway
PAGE = 500          # keys per range request while loading

Cmp = rpc_pb2.Compare


def _put(key: bytes, value: bytes = b"", lease: int = 0) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def _delete(key: bytes, range_end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end))


class EtcdStore:
    """The Store on etcd, through `client` (its endpoints are the etcd members), under `prefix`."""

    holds_leases = True   # registrations outlive this process in etcd, held by their leases

    def __init__(self, client: EtcdClient, prefix: str = "/meshgrpc", catch_up_timeout: float = 5.0) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.mirror = Mirror(self.keys)
        self._catch_up_timeout = catch_up_timeout
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._adopt: Callable[[MeshState], None] = lambda state: None
        self._watch: PrefixWatch | None = None
        self._upkeep_due = asyncio.Event()
        self._reload_due = False
        self._upkeep = OwnedTask("etcd-store-upkeep", self._upkeep_forever)

    # --- reading ------------------------------------------------------------------

    async def load(self) -> Stored:
        revision, kvs = await self._read_all()
        self.mirror.load(revision, kvs)
        return self.mirror.stored()

    async def _read_all(self) -> tuple[int, list]:
        """Every key under the prefix at one revision, a page at a time."""
        first = await self.client.range_prefix(self.keys.prefix, limit=PAGE)
        revision, kvs, more = first.header.revision, list(first.kvs), first.more
        while more:
            # The same revision for every page: one consistent view.
            page = await self.client.range(kvs[-1].key + b"\0", prefix_end(self.keys.prefix), revision, PAGE)
            kvs += page.kvs
            more = page.more
        return revision, kvs

    def initial_state(self, stored: Stored) -> MeshState:
        return self.mirror.state()

    def follow(self, adopt: Callable[[MeshState], None]) -> None:
        self._adopt = adopt
        self._start_watch()
        self._upkeep.start()
        if not self.mirror.settled:
            self._upkeep_due.set()

    def _start_watch(self) -> None:
        self._watch = self.client.watch(self.keys.prefix, self.mirror.revision + 1, self._on_events, self._on_compacted)
        self._watch.start()

    def _on_events(self, revision: int, events) -> None:
        mirror = self.mirror
        before = mirror.head, dict(mirror.heads), mirror.fingerprint
        mirror.apply(revision, events)
        if events and before != (mirror.head, mirror.heads, mirror.fingerprint):
            self._adopt(mirror.state())
        if not mirror.settled:
            self._upkeep_due.set()
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiting = []
        for revision, future in self._waiters:
            if future.done():
                continue
            if self.mirror.revision >= revision:
                future.set_result(None)
            else:
                waiting.append((revision, future))
        self._waiters = waiting

    def _on_compacted(self, error: Compacted) -> None:
        # The watch fell behind etcd's history and cannot resume event by event:
        # read the whole prefix again.
        log.warning("etcd watch: %s; reloading the prefix", error)
        self._reload_due = True
        self._upkeep_due.set()

    async def wait_reached(self, revision: int) -> bool:
        """Waits until the mirror holds `revision`; False after the catch-up timeout."""
        if self.mirror.revision >= revision:
            return True
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, future))
        try:
            await asyncio.wait_for(future, self._catch_up_timeout)
        except TimeoutError:
            return False
        return True

    # --- writing ------------------------------------------------------------------

    async def commit(self, change: Commit, base: MeshState, after: MeshState) -> MeshState:
        if change.is_empty():
            return after
        commit_id = uuid.uuid4().hex.encode()
        request = self._transaction(change, base, commit_id)
        try:
            response = await self.client.txn(request)
        except grpc.aio.AioRpcError as e:
            # Not retryable: etcd refused the request itself (too many operations,
            # too large). Nothing was applied.
            raise FailedPrecondition(f"etcd refused the commit: {e.details()} (raise etcd's --max-txn-ops "
                                     "or --max-request-bytes for changes this large)") from None
        if response.succeeded:
            return await self._caught_up(response.header.revision, after)
        head = response.responses[0].response_range.kvs
        if head and head[0].value == commit_id:   # a retry of a commit that had gone through
            return await self._caught_up(head[0].mod_revision, after)
        await self.wait_reached(head[0].mod_revision if head else response.header.revision)
        raise Conflict(f"the mesh is at revision {self.mirror.head}, this change was planned at {base.revision}")

    def _transaction(self, change: Commit, base: MeshState, commit_id: bytes) -> rpc_pb2.TxnRequest:
        keys = self.keys
        compares, ops, touched = [], [], set()
        dropped = {name for (t, name), m in change.resources.items() if t == resources.CLUSTER and m is None}
        if change.resources or change.config_digest is not None:
            compares.append(Cmp(key=keys.head, target=Cmp.MOD, result=Cmp.EQUAL, mod_revision=base.revision))
            ops.append(_put(keys.head, commit_id))
        for (type_url, name), message in change.resources.items():
            key = keys.resource(type_url, name)
            ops.append(_delete(key) if message is None else _put(key, message.SerializeToString(deterministic=True)))
            touched.add(type_url)
        for cluster in sorted(dropped):
            # Every replica's registrations in the cluster, not only those this one knows.
            ops.append(_delete(keys.registrations_of(cluster), prefix_end(keys.registrations_of(cluster))))
            touched.add(resources.ENDPOINTS)
        for (cluster, address), instance in change.registrations.items():
            touched.add(resources.ENDPOINTS)
            if cluster in dropped:
                continue
            key = keys.registration(cluster, address)
            if instance is None:
                ops.append(_delete(key))
            else:
                ops.append(_put(key, instance.SerializeToString(deterministic=True), change.lease))
                compares.append(Cmp(key=keys.resource(resources.CLUSTER, cluster), target=Cmp.VERSION,
                                    result=Cmp.GREATER, version=0))
        if change.config_digest is not None:
            ops.append(_put(keys.config_digest, change.config_digest.encode()))
        for type_url in sorted(touched):
            value = (fingerprint_bytes(self.mirror.fingerprint_after(change, dropped))
                     if type_url == resources.ENDPOINTS else b"")
            ops.append(_put(keys.type_head(type_url), value))
        failure = [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=keys.head))]
        return rpc_pb2.TxnRequest(compare=compares, success=ops, failure=failure)

    async def _caught_up(self, revision: int, after: MeshState) -> MeshState:
        if await self.wait_reached(revision):
            return self.mirror.state()
        log.warning("committed at revision %d; this replica's watch has not seen it yet", revision)
        return after

    # --- leases -------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        return await self.client.grant(max(MIN_LEASE_TTL, math.ceil(ttl)))

    async def keep_lease(self, lease: int) -> bool:
        return await self.client.keep_alive(lease) > 0

    async def end_lease(self, lease: int) -> None:
        await self.client.revoke(lease)

    def lease_of(self, key: tuple[str, str]) -> int:
        return self.mirror.leases.get(key, 0)

    # --- upkeep: reloading after compaction, versioning expired leases -------------

    async def _upkeep_forever(self) -> None:
        while True:
            await self._upkeep_due.wait()
            self._upkeep_due.clear()
            try:
                if self._reload_due:
                    await self._reload()
                if not self.mirror.settled:
                    await self._bump_endpoints()
            except Unavailable as e:
                log.warning("etcd store upkeep postponed: %s", e)
                await asyncio.sleep(0.5)
                self._upkeep_due.set()

    async def _reload(self) -> None:
        await self._watch.stop()
        revision, kvs = await self._read_all()
        mirror = Mirror(self.keys)
        mirror.load(revision, kvs)
        self.mirror, self._reload_due = mirror, False
        self._start_watch()
        self._adopt(mirror.state())
        self._wake_waiters()

    async def _bump_endpoints(self) -> None:
        """Versions the registrations as they are, unless another replica does first."""
        head_key = self.keys.type_head(resources.ENDPOINTS)
        seen = self.mirror.heads.get(resources.ENDPOINTS, (0, b""))[0]
        request = rpc_pb2.TxnRequest(
            compare=[Cmp(key=head_key, target=Cmp.MOD, result=Cmp.EQUAL, mod_revision=seen)],
            success=[_put(head_key, fingerprint_bytes(self.mirror.fingerprint))])
        response = await self.client.txn(request)
        if response.succeeded:
            log.info("registrations changed without a commit (a lease expired): endpoints version %d",
                     response.header.revision)

    def __repr__(self) -> str:
        return f"EtcdStore({self.client.endpoints}, {self.mirror!r}, waiting={len(self._waiters)})"

    async def close(self) -> None:
        await self._upkeep.stop()
        if self._watch is not None:
            await self._watch.stop()
        await self.client.close()


def parse_store_url(url: str) -> list[str]:
    """The endpoints of `etcd://host:port,host:port,...`. Raises ValueError."""
    scheme, sep, rest = url.partition("://")
    if scheme != "etcd" or not sep:
        raise ValueError(f"{url!r}: expected sqlite (the default) or etcd://HOST:PORT[,HOST:PORT...]")
    endpoints = [e for e in rest.rstrip("/").split(",") if e]
    if not endpoints or any(":" not in e for e in endpoints):
        raise ValueError(f"{url!r}: every etcd endpoint must be HOST:PORT")
    return endpoints
