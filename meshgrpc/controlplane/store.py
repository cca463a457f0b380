"""The control plane's durable memory: committed resources, per-type versions,
registrations and the digest of the config file last applied.

`Store` is the small interface the rest of the control plane sees, so that a
distributed store (etcd) can replace the embedded `SqliteStore`. Every write is one
`Commit` applied in one transaction: either all of it is durable or none of it is.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from typing import Protocol

from google.protobuf.message import Message

from meshapi.v1 import management_pb2
from meshgrpc.config import resources

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

    def is_empty(self) -> bool:
        return not (self.resources or self.registrations or self.versions or self.config_digest is not None)


@dataclasses.dataclass(frozen=True)
class Stored:
    """Everything the store holds, as read back at start-up."""

    resources: dict[ResourceKey, Message]
    registrations: dict[RegistrationKey, management_pb2.Instance]
    versions: dict[str, TypeVersion]
    config_digest: str


class Store(Protocol):
    """Durable state. `commit` returns only once the change survives a crash."""

    def load(self) -> Stored: ...

    def commit(self, change: Commit) -> None: ...

    def close(self) -> None: ...


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

    def load(self) -> Stored:
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

    def commit(self, change: Commit) -> None:
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

    def close(self) -> None:
        self._db.close()


def _decode(cls: type[Message], data: bytes) -> Message:
    message = cls()
    message.ParseFromString(data)
    return message
