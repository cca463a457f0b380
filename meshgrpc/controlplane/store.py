"""The control plane's durable memory: committed resources, per-type versions,
registrations and the digest of the config file last applied.

`Store` is the small interface the rest of the control plane sees, with two
implementations: the embedded `SqliteStore` (here, the default) and `EtcdStore`
(etcd_store.py: several replicas on one etcd). Every write is one `Commit`
applied in one transaction: either all of it is durable or none of it is.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sqlite3
from typing import TYPE_CHECKING, Callable, Protocol

import grpc
from google.protobuf.message import Message

from meshapi.v1 import management_pb2
from meshgrpc.config import resources
from meshgrpc.errors import MeshError

if TYPE_CHECKING:
    from meshgrpc.controlplane.state import MeshState

ResourceKey = tuple[str, str]          # (type_url, name)
RegistrationKey = tuple[str, str]      # (cluster, address)


@dataclasses.dataclass(frozen=True)
class TypeVersion:
    """The version served for one type and the digest of the content it names."""

    version: str
    digest: str


@dataclasses.dataclass(frozen=True)
class Commit:
    """One atomic change. `None` values delete; absent keys are untouched."""

    resources: dict[ResourceKey, Message | None] = dataclasses.field(default_factory=dict)
    registrations: dict[RegistrationKey, management_pb2.Instance | None] = dataclasses.field(default_factory=dict)
    versions: dict[str, TypeVersion] = dataclasses.field(default_factory=dict)
    config_digest: str | None = None   # None leaves the stored digest as it is
    # The lease the registrations written here are held by (etcd; 0: none).
    lease: int = 0

    def is_empty(self) -> bool:
        return not (self.resources or self.registrations or self.versions or self.config_digest is not None)


@dataclasses.dataclass(frozen=True)
class Stored:
    """Everything the store holds, as read back at start-up."""

    resources: dict[ResourceKey, Message]
    registrations: dict[RegistrationKey, management_pb2.Instance]
    versions: dict[str, TypeVersion]
    config_digest: str
    # Registration leases by key (etcd; empty for SQLite).
    leases: dict[RegistrationKey, int] = dataclasses.field(default_factory=dict)


class Conflict(MeshError):
    """The state a commit was planned on is no longer current: another writer
    committed first. The store has caught up with the newer state when it raises."""

    code = grpc.StatusCode.ABORTED


class Store(Protocol):
    """Durable state shared by every replica of the control plane."""

    async def load(self) -> Stored: ...

    def initial_state(self, stored: Stored) -> MeshState:
        """The state to start from, once `load` has returned."""

    async def commit(self, change: Commit, base: MeshState, after: MeshState) -> MeshState:
        """Makes `change` durable (it survives a crash once this returns) and returns
        the state now current, `after` or newer. Raises Conflict when `base` is not
        the current state any more, changing nothing."""

    def follow(self, adopt: Callable[[MeshState], None]) -> None:
        """From now on calls `adopt(state)` with each state other writers commit."""

    async def grant_lease(self, ttl: float) -> int:
        """A lease for registrations: etcd deletes what it holds when it is not
        kept alive for `ttl` seconds (the SQLite store's leases live in memory)."""

    async def keep_lease(self, lease: int) -> bool:
        """Renews `lease`; False when it is gone."""

    async def end_lease(self, lease: int) -> None: ...

    def lease_of(self, key: RegistrationKey) -> int:
        """The store lease holding a registration; 0 when the store holds none."""

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    type_url TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (type_url, name));
CREATE TABLE IF NOT EXISTS versions (
    type_url TEXT PRIMARY KEY, version TEXT NOT NULL, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS registrations (
    cluster TEXT NOT NULL, address TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (cluster, address));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SqliteStore:
    """The embedded store: one SQLite file in the data dir.

    WAL with synchronous=FULL makes each commit durable across power loss, not only
    across a killed process. Not thread-safe: the control plane calls it from its
    event loop only (commits take well under a millisecond on local disks).
    """

    FILENAME = "meshgrpc.db"

    def __init__(self, data_dir: str) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, self.FILENAME)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per Commit.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._leases = itertools.count(1)

    async def load(self) -> Stored:
        return self.read()

    def initial_state(self, stored: Stored) -> MeshState:
        from meshgrpc.controlplane.state import MeshState
        return MeshState.from_stored(stored)

    async def commit(self, change: Commit, base: MeshState, after: MeshState) -> MeshState:
        # One writer (this process), so `base` is always current.
        self.write(change)
        return after

    def follow(self, adopt: Callable[[MeshState], None]) -> None:
        """Nothing to follow: this process is the only writer."""

    async def grant_lease(self, ttl: float) -> int:
        return next(self._leases)

    async def keep_lease(self, lease: int) -> bool:
        return True   # the registry's lease table decides expiry for one process

    async def end_lease(self, lease: int) -> None:
        pass

    def lease_of(self, key: RegistrationKey) -> int:
        return 0

    holds_leases = False   # registrations are restored with fresh leases at start-up

    def read(self) -> Stored:
        db = self._db
        stored_resources = {
            (type_url, name): _decode(resources.MESSAGE_CLASS[type_url], data)
            for type_url, name, data in db.execute("SELECT type_url, name, data FROM resources")
            if type_url in resources.MESSAGE_CLASS
        }
        registrations = {
            (cluster, address): _decode(management_pb2.Instance, data)
            for cluster, address, data in db.execute("SELECT cluster, address, data FROM registrations")
        }
        versions = {t: TypeVersion(v, d) for t, v, d in db.execute("SELECT type_url, version, digest FROM versions")}
        row = db.execute("SELECT value FROM meta WHERE key = 'config_digest'").fetchone()
        return Stored(stored_resources, registrations, versions, row[0] if row else "")

    def record_versions(self, versions: dict[str, TypeVersion]) -> None:
        """Records the versions the publisher numbered (before it serves them)."""
        self.write(Commit(versions=versions))

    def write(self, change: Commit) -> None:
        """Commits `change` in one transaction, synchronously."""
        if change.is_empty():
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._write(change)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _write(self, change: Commit) -> None:
        db = self._db
        for (type_url, name), message in change.resources.items():
            if message is None:
                db.execute("DELETE FROM resources WHERE type_url = ? AND name = ?", (type_url, name))
            else:
                db.execute("INSERT OR REPLACE INTO resources VALUES (?, ?, ?)",
                           (type_url, name, message.SerializeToString(deterministic=True)))
        for (cluster, address), instance in change.registrations.items():
            if instance is None:
                db.execute("DELETE FROM registrations WHERE cluster = ? AND address = ?", (cluster, address))
            else:
                db.execute("INSERT OR REPLACE INTO registrations VALUES (?, ?, ?)",
                           (cluster, address, instance.SerializeToString(deterministic=True)))
        for type_url, tv in change.versions.items():
            db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?)", (type_url, tv.version, tv.digest))
        if change.config_digest is not None:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('config_digest', ?)", (change.config_digest,))

    async def close(self) -> None:
        self._db.close()


def _decode(cls: type[Message], data: bytes) -> Message:
    message = cls()
    message.ParseFromString(data)
    return message
