"""Immutable, versioned snapshots of the mesh as the discovery stream serves it.

A Snapshot holds, per resource type, a version and the resources by name, each
packed into a `google.protobuf.Any` and serialized once when the snapshot is
built; every stream that is sent that version shares those bytes (and the
prebuilt response body, see `TypeResources.body`). Nothing in a snapshot may be
mutated after construction: callers build a new one and swap the reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
from collections.abc import Iterable, Mapping

from google.protobuf.message import Message

from meshapi.v1 import resources_pb2
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, LISTENER, MESH_FIELD, MESH_TYPES, ROUTES, resource_name
from meshgrpc.config.validate import referenced_clusters
from meshgrpc.errors import ConfigError, FieldError
from meshgrpc.xds import wire

# Suffix of the interim version make-before-break sends (see ordering.py); a
# control plane must not use it in its own versions.
INTERIM_SUFFIX = "+mbb"


@dataclasses.dataclass(frozen=True, slots=True)
class PackedResource:
    """One resource at one version. `message` is shared: never mutate it."""

    name: str
    # The type's version this resource was packed at; with the name it identifies
    # the content (versions change whenever content does).
    version: str
    message: Message
    # The serialized google.protobuf.Any, shared by every stream.
    any_bytes: bytes
    # For route configs: the clusters they reference; empty for other types.
    refs: frozenset[str]
    # The resource's own version on the delta stream: a digest of its content, so
    # every replica and every restart gives the same content the same version
    # ("" for resources never sent on a delta stream: Envoy's, to proxyless clients).
    hash: str = ""
    # Its DeltaDiscoveryResponse `resources` entry, shared by every delta stream.
    delta_field: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class TypeResources:
    """Every resource of one type at one version."""

    type_url: str
    version: str
    resources: Mapping[str, PackedResource]
    # Union of `refs` over all resources (clusters used by the routes).
    refs: frozenset[str]
    # A DiscoveryResponse without its nonce, carrying every resource: what a
    # wildcard subscriber is sent (the nonce field is appended per stream).
    body: bytes
    digest: str

    @classmethod
    def build(cls, type_url: str, version: str, messages: Iterable[Message]) -> "TypeResources":
        packed = {}
        for message in sorted(messages, key=resource_name):
            packed[resource_name(message)] = pack(type_url, version, message)
        refs = frozenset().union(*(p.refs for p in packed.values()))
        body = wire.response_body(type_url, version, [p.any_bytes for p in packed.values()])
        return cls(type_url, version, types.MappingProxyType(packed), refs, body, _digest(packed.values()))


def pack(type_url: str, version: str, message: Message) -> PackedResource:
    name = resource_name(message)
    any_bytes = wire.pack_any(type_url, message)
    digest = hashlib.sha256(any_bytes).hexdigest()[:16]
    return PackedResource(name, version, message, any_bytes, _refs(message), digest,
                          wire.delta_resource_field(name, digest, any_bytes))


class Snapshot:
    """The mesh at one moment: per type URL a version and resources by name."""

    __slots__ = ("_types",)

    def __init__(self, by_type: Mapping[str, TypeResources]) -> None:
        missing = [t for t in MESH_TYPES if t not in by_type]
        if missing:
            raise ValueError(f"snapshot lacks resource types {missing}")
        self._types = types.MappingProxyType(dict(by_type))

    @classmethod
    def from_mesh(cls, mesh: resources_pb2.MeshConfig, versions: Mapping[str, str] | None = None) -> "Snapshot":
        """Packs every resource of `mesh`. A type missing from `versions` gets its
        content digest's first 16 hex digits as version. Raises ConfigError on
        duplicate names (one name must mean one resource)."""
        _check_unique(mesh)
        versions = versions or {}
        built = {}
        for type_url in MESH_TYPES:
            messages = list(getattr(mesh, MESH_FIELD[type_url]))
            version = versions.get(type_url)
            if version is None:
                version = _digest_messages(messages)[:16]
            built[type_url] = TypeResources.build(type_url, version, messages)
        return cls(built)

    def __getitem__(self, type_url: str) -> TypeResources:
        return self._types[type_url]

    def versions(self) -> dict[str, str]:
        return {t: r.version for t, r in self._types.items()}

    def digest(self, type_url: str) -> str:
        """A hash of the type's content (names and deterministic serializations),
        independent of the version: equal digests mean nothing changed."""
        return self._types[type_url].digest

    def resources(self, type_url: str) -> dict[str, Message]:
        return {n: p.message for n, p in self._types[type_url].resources.items()}

    def consistency_errors(self) -> list[str]:
        """Checks exactly three kinds of reference, within this snapshot:
        1. every cluster a route config references (`route.cluster`, each
           `weighted_clusters[].name` and `mirror.cluster`) is one of the snapshot's clusters;
        2. every endpoint set's `cluster` is one of the snapshot's clusters;
        3. every listener's `route_config` is one of the snapshot's route configs.
        Returns one message per broken reference (empty when consistent)."""
        clusters = self._types[CLUSTER].resources
        errors = []
        for name, route in self._types[ROUTES].resources.items():
            errors += [f"route config {name!r} references unknown cluster {c!r}"
                       for c in sorted(route.refs) if c not in clusters]
        errors += [f"endpoint set for unknown cluster {name!r}"
                   for name in self._types[ENDPOINTS].resources if name not in clusters]
        routes = self._types[ROUTES].resources
        errors += [f"listener {name!r} references unknown route config {p.message.route_config!r}"
                   for name, p in self._types[LISTENER].resources.items() if p.message.route_config not in routes]
        return errors

    def __repr__(self) -> str:
        return f"Snapshot({self.versions()})"


def mesh_digests(mesh: resources_pb2.MeshConfig) -> dict[str, str]:
    """Per type URL, the content digest `Snapshot.digest` would report, without packing."""
    return {t: _digest_messages(list(getattr(mesh, MESH_FIELD[t]))) for t in MESH_TYPES}


def route_refs(route: Message) -> frozenset[str]:
    """Clusters a RouteConfig's actions name (mirrors included): the one definition
    the validator also uses."""
    return frozenset(referenced_clusters(route))


def _refs(message: Message) -> frozenset[str]:
    return route_refs(message) if isinstance(message, resources_pb2.RouteConfig) else frozenset()


def _digest(packed: Iterable[PackedResource]) -> str:
    return _digest_messages([p.message for p in packed])


def _digest_messages(messages: list[Message]) -> str:
    h = hashlib.sha256()
    for message in sorted(messages, key=resource_name):
        data = message.SerializeToString(deterministic=True)
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def _check_unique(mesh: resources_pb2.MeshConfig) -> None:
    errors = []
    for type_url in MESH_TYPES:
        field = MESH_FIELD[type_url]
        seen = set()
        for i, message in enumerate(getattr(mesh, field)):
            name = resource_name(message)
            if name in seen:
                key = "cluster" if type_url == ENDPOINTS else "name"
                errors.append(FieldError(f"{field}[{i}].{key}", f"duplicate name {name!r}"))
            seen.add(name)
    if errors:
        raise ConfigError(errors)
