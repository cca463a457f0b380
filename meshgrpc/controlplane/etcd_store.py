"""EtcdStore: the mesh's state in etcd, shared by several control-plane replicas.

Key layout under the prefix (`--etcd-prefix`, default /meshgrpc):

    P/resources/<type>/<name>           a configured resource (deterministic protobuf)
    P/registrations/<cluster>/<address> a registered Instance, attached to its lease
    P/heads/<type>                      written by every commit that changes the type
    P/head                              written by every configuration commit
    P/meta/config_digest                digest of the --config file last applied
(names are percent-encoded, so a "/" in one cannot break the layout).

Decisions:
- Every commit is one etcd transaction. A configuration commit (apply, delete,
  config file) compares P/head's mod revision with the one its plan was based on
  (compare-and-swap): of two replicas committing at once, one fails the compare
  and gets Conflict (the controller rebases or aborts). A registration commit only
  compares that its cluster exists, so registrations on different replicas never
  conflict with each other; deleting a cluster deletes every registration under it.
- A type's version is the mod revision of P/heads/<type>: the revision of the last
  commit that changed it. Every replica reads the same keys, so every replica
  serves the same version for the same state, and a proxy that moves to another
  replica resumes without a resend.
- Registrations are etcd leases: the key dies with its lease, so a replica that
  dies takes no registration with it until the lease expires. Such a deletion
  commits no head, so P/heads/endpoints also records a fingerprint of the
  registrations it versions; a replica that sees them differ (a lease expired, or
  two replicas registered at once) bumps it with a compare-and-swap, and until
  then the state is unsettled and not served.
- Each replica mirrors the prefix: loaded once, then kept by a watch that resumes
  from the last revision seen. A commit returns once the mirror has reached its
  revision, so the versions an apply reports are the ones being served.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import uuid
from collections.abc import Callable
from urllib.parse import quote, unquote

import grpc
from google.protobuf.message import Message

from etcdapi import rpc_pb2
from meshapi.v1 import management_pb2
from meshgrpc.config import resources
from meshgrpc.controlplane.etcd_client import Compacted, EtcdClient, PrefixWatch, prefix_end
from meshgrpc.controlplane.state import MeshState
from meshgrpc.controlplane.store import Commit, Conflict, Stored, TypeVersion
from meshgrpc.errors import FailedPrecondition, Unavailable
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

TYPE_KEY = {t: resources.SHORT_NAME[t] for t in resources.TYPE_ORDER}
TYPE_OF_KEY = {v: k for k, v in TYPE_KEY.items()}
MIN_LEASE_TTL = 2   # seconds; etcd raises shorter TTLs to about its election timeout anyway
PAGE = 500          # keys per range request while loading

Cmp = rpc_pb2.Compare


class Keys:
    """Where each record lives under the prefix."""

    def __init__(self, prefix: str) -> None:
        self.root = prefix.rstrip("/") + "/"
        self.prefix = self.root.encode()
        self.head = self._key("head")
        self.config_digest = self._key("meta", "config_digest")

    def _key(self, *parts: str) -> bytes:
        return (self.root + "/".join(parts)).encode()

    def resource(self, type_url: str, name: str) -> bytes:
        return self._key("resources", TYPE_KEY[type_url], quote(name, safe=""))

    def registration(self, cluster: str, address: str) -> bytes:
        return self._key("registrations", quote(cluster, safe=""), quote(address, safe=""))

    def registrations_of(self, cluster: str) -> bytes:
        return self._key("registrations", quote(cluster, safe=""), "")

    def type_head(self, type_url: str) -> bytes:
        return self._key("heads", TYPE_KEY[type_url])

    def parse(self, key: bytes) -> tuple[str, tuple[str, ...]]:
        """(kind, parts) of a key under the prefix; kind "" for keys meshgrpc does not know."""
        parts = key.decode()[len(self.root):].split("/")
        if parts[0] == "resources" and len(parts) == 3 and parts[1] in TYPE_OF_KEY:
            return "resource", (TYPE_OF_KEY[parts[1]], unquote(parts[2]))
        if parts[0] == "registrations" and len(parts) == 3:
            return "registration", (unquote(parts[1]), unquote(parts[2]))
        if parts[0] == "heads" and len(parts) == 2 and parts[1] in TYPE_OF_KEY:
            return "type_head", (TYPE_OF_KEY[parts[1]],)
        if parts == ["head"]:
            return "head", ()
        if parts == ["meta", "config_digest"]:
            return "config_digest", ()
        return "", ()


def registration_hash(key: bytes, value: bytes) -> int:
    return int.from_bytes(hashlib.sha256(key + b"\0" + value).digest()[:8], "big")


class Mirror:
    """This replica's copy of the prefix, kept current from watch events. Pure."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.revision = 0
        self.configured: dict[str, dict[str, Message]] = {t: {} for t in resources.TYPE_ORDER}
        self.registrations: dict[str, dict[str, management_pb2.Instance]] = {}
        self.leases: dict[tuple[str, str], int] = {}
        self.heads: dict[str, tuple[int, bytes]] = {}   # type -> (mod revision, value)
        self.head = 0
        self.head_value = b""
        self.config_digest = ""
        # XOR of registration_hash over the registrations: order-free, updated per event.
        self.fingerprint = 0
        self._hashes: dict[bytes, int] = {}

    def load(self, revision: int, kvs) -> None:
        self.revision = revision
        for kv in kvs:
            self._put(kv)

    def apply(self, revision: int, events) -> None:
        self.revision = revision
        for event in events:
            if event.type == rpc_pb2.Event.DELETE:
                self._delete(event.kv)
            else:
                self._put(event.kv)

    def _put(self, kv) -> None:
        kind, parts = self.keys.parse(kv.key)
        if kind == "resource":
            type_url, name = parts
            message = resources.MESSAGE_CLASS[type_url]()
            message.ParseFromString(kv.value)
            self.configured[type_url][name] = message
        elif kind == "registration":
            cluster, address = parts
            instance = management_pb2.Instance()
            instance.ParseFromString(kv.value)
            self.registrations.setdefault(cluster, {})[address] = instance
            self.leases[parts] = kv.lease
            self._rehash(kv.key, registration_hash(kv.key, kv.value))
        elif kind == "type_head":
            self.heads[parts[0]] = (kv.mod_revision, kv.value)
        elif kind == "head":
            self.head, self.head_value = kv.mod_revision, kv.value
        elif kind == "config_digest":
            self.config_digest = kv.value.decode()

    def _delete(self, kv) -> None:
        kind, parts = self.keys.parse(kv.key)
        if kind == "resource":
            self.configured[parts[0]].pop(parts[1], None)
        elif kind == "registration":
            cluster, address = parts
            by_address = self.registrations.get(cluster, {})
            by_address.pop(address, None)
            if not by_address:
                self.registrations.pop(cluster, None)
            self.leases.pop(parts, None)
            self._rehash(kv.key, 0)
        elif kind == "type_head":
            self.heads.pop(parts[0], None)

    def _rehash(self, key: bytes, new: int) -> None:
        self.fingerprint ^= self._hashes.pop(key, 0) ^ new
        if new:
            self._hashes[key] = new

    def fingerprint_after(self, change: Commit, dropped_clusters: set[str]) -> int:
        """The registrations' fingerprint once `change` is applied."""
        fingerprint = self.fingerprint
        for key, h in self._hashes.items():
            cluster = self.keys.parse(key)[1][0]
            if cluster in dropped_clusters:
                fingerprint ^= h
        for (cluster, address), instance in change.registrations.items():
            if cluster in dropped_clusters:
                continue
            key = self.keys.registration(cluster, address)
            fingerprint ^= self._hashes.get(key, 0)
            if instance is not None:
                fingerprint ^= registration_hash(key, instance.SerializeToString(deterministic=True))
        return fingerprint

    @property
    def settled(self) -> bool:
        """True when the endpoints head versions exactly the registrations held."""
        recorded = self.heads.get(resources.ENDPOINTS, (0, b""))[1]
        return recorded == _fingerprint_bytes(self.fingerprint) or (not recorded and not self.fingerprint)

    def state(self) -> MeshState:
        versions = {t: str(self.heads.get(t, (0, b""))[0]) for t in resources.TYPE_ORDER}
        return MeshState({t: dict(v) for t, v in self.configured.items()},
                         {c: dict(v) for c, v in self.registrations.items()},
                         versions=versions, revision=self.head, settled=self.settled)

    def stored(self) -> Stored:
        state = self.state()
        return Stored(
            {(t, n): m for t, by_name in self.configured.items() for n, m in by_name.items()},
            {(c, a): i for c, by_address in self.registrations.items() for a, i in by_address.items()},
            {t: TypeVersion(v, "") for t, v in state.versions.items()}, self.config_digest, dict(self.leases))


def _fingerprint_bytes(fingerprint: int) -> bytes:
    return f"{fingerprint:016x}".encode()


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
        first = await self.client.range_prefix(self.keys.prefix)
        revision, kvs, more = first.header.revision, list(first.kvs), first.more
        while more:
            # The same revision for every page: one consistent view.
            page = await self.client.range(kvs[-1].key + b"\0", prefix_end(self.keys.prefix), revision)
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
            value = (_fingerprint_bytes(self.mirror.fingerprint_after(change, dropped))
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
            success=[_put(head_key, _fingerprint_bytes(self.mirror.fingerprint))])
        response = await self.client.txn(request)
        if response.succeeded:
            log.info("registrations changed without a commit (a lease expired): endpoints version %d",
                     response.header.revision)

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
