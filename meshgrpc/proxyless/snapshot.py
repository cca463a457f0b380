"""The mesh as proxyless clients get it: one Envoy snapshot per mesh snapshot,
translated once and serialized once per version, shared by every client stream.

`EnvoySnapshot` has the shape the discovery session reads (`snapshot[type_url]`
is a `TypeResources`, so ordering.py and the body cache work on it unchanged),
plus the gap lines of each resource. Versions are made of the mesh's versions
each Envoy type is built from, so they change exactly when the content can:
LDS `<listeners>.<routes>` (a route's fault puts the fault filter in the
listener), RDS `<routes>`, CDS `<clusters>`, EDS `<endpoints>.<clusters>`.

`TranslatedCache` puts it behind the interface a session uses (`current`,
`add_listener`): translation happens on first use after each change, so a
control plane with no proxyless client never translates.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterable, Mapping

from google.protobuf.message import Message

from meshgrpc.config import resources as mesh
from meshgrpc.config.specs import cluster_spec, endpoint_specs, listener_spec, route_config_spec
from meshgrpc.proxyless import translate_clusters, translate_routes
from meshgrpc.proxyless.envoy_types import CDS, EDS, ENVOY_TYPES, LDS, RDS
from meshgrpc.xds import wire
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.snapshot import PackedResource, Snapshot, TypeResources

log = logging.getLogger(__name__)

# envoy.service.discovery.v3.DiscoveryResponse: version_info = 1, resources = 2,
# type_url = 4, nonce = 5.
ENVOY_RESPONSE = wire.ResponseFields(type_url=b"\x22", version=b"\x0a", nonce=b"\x2a", resources=b"\x12")

Translated = tuple[Message, list[str], frozenset[str]]  # message, gap lines, names it references


class EnvoySnapshot:
    """Envoy resources per type URL, and the gap lines per (type URL, name)."""

    __slots__ = ("_types", "_gaps")

    def __init__(self, by_type: Mapping[str, TypeResources], gaps: Mapping[tuple[str, str], tuple[str, ...]]) -> None:
        self._types = types.MappingProxyType(dict(by_type))
        self._gaps = types.MappingProxyType(dict(gaps))

    def __getitem__(self, type_url: str) -> TypeResources:
        return self._types[type_url]

    def versions(self) -> dict[str, str]:
        return {t: r.version for t, r in self._types.items()}

    def gap_items(self):
        """(type URL, name) and gap lines, for every resource with any."""
        return self._gaps.items()

    def gaps(self, subscriptions: Mapping[str, Iterable[str] | None]) -> list[str]:
        """The gap lines of the resources subscribed to (type URL -> names, None = all), in order."""
        lines: list[str] = []
        for type_url in ENVOY_TYPES:
            names = subscriptions.get(type_url, ())
            for name in sorted(self._types[type_url].resources if names is None else names):
                lines.extend(self._gaps.get((type_url, name), ()))
        return lines

    def consistency_errors(self) -> list[str]:
        """Every listener's route config, route's cluster and cluster's endpoints is here."""
        errors = []
        for referrer, referred in ((LDS, RDS), (RDS, CDS), (CDS, EDS)):
            have = self._types[referred].resources
            for name, packed in self._types[referrer].resources.items():
                errors += [f"{referrer.rsplit('.', 1)[-1]} {name!r} references missing {ref!r}"
                           for ref in sorted(packed.refs) if ref not in have]
        return errors

    def __repr__(self) -> str:
        return f"EnvoySnapshot({self.versions()})"


def translate(snapshot: Snapshot, previous: EnvoySnapshot | None = None) -> EnvoySnapshot:
    """The Envoy resources for `snapshot`, which is consistent (the cache checked).
    A type whose version equals its version in `previous` is taken from there as
    it is: it was translated and serialized once already."""
    v = snapshot.versions()
    versions = {LDS: f"{v[mesh.LISTENER]}.{v[mesh.ROUTES]}", RDS: v[mesh.ROUTES], CDS: v[mesh.CLUSTER],
                EDS: f"{v[mesh.ENDPOINTS]}.{v[mesh.CLUSTER]}"}
    by_type, gaps = {}, {}
    for type_url in ENVOY_TYPES:
        if previous is not None and previous[type_url].version == versions[type_url]:
            by_type[type_url] = previous[type_url]
            gaps.update({k: g for k, g in previous.gap_items() if k[0] == type_url})
            continue
        built = _BUILDERS[type_url](snapshot)
        by_type[type_url] = type_resources(type_url, versions[type_url], built)
        gaps.update({(type_url, n): tuple(lines) for n, (_, lines, _) in built.items() if lines})
    return EnvoySnapshot(by_type, gaps)


def _listeners(snapshot: Snapshot) -> dict[str, Translated]:
    routes = {n: route_config_spec(m) for n, m in snapshot.resources(mesh.ROUTES).items()}
    specs = {n: listener_spec(m) for n, m in snapshot.resources(mesh.LISTENER).items()}
    return {n: (*translate_routes.listener(s, routes[s.route_config]), frozenset({s.route_config}))
            for n, s in specs.items()}


def _route_configs(snapshot: Snapshot) -> dict[str, Translated]:
    return {n: (*translate_routes.route_configuration(route_config_spec(p.message)), p.refs)
            for n, p in snapshot[mesh.ROUTES].resources.items()}


def _clusters(snapshot: Snapshot) -> dict[str, Translated]:
    return {n: (*translate_clusters.cluster(cluster_spec(m)), frozenset({n}))
            for n, m in snapshot.resources(mesh.CLUSTER).items()}


def _load_assignments(snapshot: Snapshot) -> dict[str, Translated]:
    endpoint_sets = snapshot.resources(mesh.ENDPOINTS)
    return {n: (*translate_clusters.load_assignment(cluster_spec(m), endpoint_specs(endpoint_sets.get(n))),
                frozenset())
            for n, m in snapshot.resources(mesh.CLUSTER).items()}


_BUILDERS = {LDS: _listeners, RDS: _route_configs, CDS: _clusters, EDS: _load_assignments}


def type_resources(type_url: str, version: str, built: Mapping[str, Translated]) -> TypeResources:
    """One Envoy type's resources at `version`, each packed and the whole response body built once."""
    packed = {n: PackedResource(n, version, m, wire.pack_any(type_url, m), refs)
              for n, (m, _, refs) in sorted(built.items())}
    refs = frozenset().union(*(p.refs for p in packed.values())) if type_url == RDS else frozenset()
    body = ENVOY_RESPONSE.body(type_url, version, [p.any_bytes for p in packed.values()])
    return TypeResources(type_url, version, types.MappingProxyType(packed), refs, body, digest="")


class TranslatedCache:
    """The Envoy view of a mesh SnapshotCache: `current` is the translation of the
    mesh's current snapshot, made on first use and kept until the next change.
    Used from the event loop thread only, like the cache it wraps."""

    def __init__(self, source: SnapshotCache,
                 translator: Callable[[Snapshot, EnvoySnapshot | None], EnvoySnapshot] = translate) -> None:
        self._source = source
        self._translator = translator
        self._from: Snapshot | None = None
        self._current: EnvoySnapshot | None = None

    @property
    def current(self) -> EnvoySnapshot | None:
        snapshot = self._source.current
        if snapshot is not None and snapshot is not self._from:
            self._current = self._translated(snapshot)
            self._from = snapshot
        return self._current

    def _translated(self, snapshot: Snapshot) -> EnvoySnapshot | None:
        envoy = self._translator(snapshot, self._current)
        errors = envoy.consistency_errors()
        if errors:
            # Keep serving the last good translation rather than send what clients would reject.
            log.error("translation of %r for proxyless clients is inconsistent, keeping %r: %s",
                      snapshot, self._current, "; ".join(errors))
            return self._current
        return envoy

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        return self._source.add_listener(listener)
