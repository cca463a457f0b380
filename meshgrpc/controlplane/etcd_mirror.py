"""The etcd store's view of its prefix, pure: where each record lives (`Keys`),
and `Mirror`, the replica's copy of the prefix kept from watch events, from which
the mesh state and its versions are derived.

Key layout under the prefix (`--etcd-prefix`, default /meshgrpc):

    P/resources/<type>/<name>           a configured resource (deterministic protobuf)
    P/registrations/<cluster>/<address> a registered Instance, attached to its lease
    P/heads/<type>                      written by every commit that changes the type
    P/head                              written by every configuration commit
    P/meta/config_digest                digest of the --config file last applied
(names are percent-encoded, so a "/" in one cannot break the layout).

Versions: a type's version is the mod revision of P/heads/<type>, the revision of
the last commit that changed it. Every replica reads the same keys, so every
replica serves the same version for the same state, and a proxy that moves to
another replica resumes without a resend.

A registration whose lease expired is deleted by etcd, with no commit of ours and
so no head written. P/heads/endpoints therefore also records a fingerprint of the
registrations it versions (an order-free XOR of their hashes); while the
registrations held differ from it the mirror is unsettled, and a replica bumps
the head (etcd_store.py) before the state is served.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote, unquote

from google.protobuf.message import Message

from etcdapi import rpc_pb2
from meshapi.v1 import management_pb2
from meshgrpc.config import resources
from meshgrpc.controlplane.state import MeshState
from meshgrpc.controlplane.store import Commit, Stored, TypeVersion

TYPE_KEY = {t: resources.SHORT_NAME[t] for t in resources.MESH_TYPES}
TYPE_OF_KEY = {v: k for k, v in TYPE_KEY.items()}


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
        self.configured: dict[str, dict[str, Message]] = {t: {} for t in resources.MESH_TYPES}
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
        return recorded == fingerprint_bytes(self.fingerprint) or (not recorded and not self.fingerprint)

    def __repr__(self) -> str:
        configured = {TYPE_KEY[t]: len(v) for t, v in self.configured.items()}
        return (f"Mirror({self.keys.root!r} revision={self.revision} head={self.head} {configured}"
                f" registrations={len(self.leases)} settled={self.settled})")

    def state(self) -> MeshState:
        versions = {t: str(self.heads.get(t, (0, b""))[0]) for t in resources.MESH_TYPES}
        return MeshState({t: dict(v) for t, v in self.configured.items()},
                         {c: dict(v) for c, v in self.registrations.items()},
                         versions=versions, revision=self.head, settled=self.settled)

    def stored(self) -> Stored:
        state = self.state()
        return Stored(
            {(t, n): m for t, by_name in self.configured.items() for n, m in by_name.items()},
            {(c, a): i for c, by_address in self.registrations.items() for a, i in by_address.items()},
            {t: TypeVersion(v, "") for t, v in state.versions.items()}, self.config_digest, dict(self.leases))


def fingerprint_bytes(fingerprint: int) -> bytes:
    return f"{fingerprint:016x}".encode()
