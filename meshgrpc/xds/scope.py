"""What a workload's discovery stream may carry: the route configs its service may
see (the one named like the service, and those whose `services` list it or "*"),
the clusters and endpoint sets they reach, the authorization policies of its own
service (what its inbound side enforces; another service's policies say who may
call that service, which is that service's business), and, for proxyless
clients, the listeners that use those route configs. Operators' streams (admin and read
tokens, or an --insecure control plane) see everything.

`ScopedViews` gives each stream the snapshot it may see: the same interface as a
Snapshot (`[type_url]`, `versions()`), each type filtered to the visible names,
built once per (snapshot, service) and shared by every stream of that service.
A filtered type keeps the snapshot's version: the version names the mesh's
state, and what a service sees is a function of that state.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping

from meshgrpc.config.resources import AUTHZ, CLUSTER, ENDPOINTS, LISTENER, ROUTES
from meshgrpc.xds import wire
from meshgrpc.xds.snapshot import Snapshot, TypeResources

EVERY_SERVICE = "*"
_VIEWS_LIMIT = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class Visible:
    """Names a service may see, by mesh resource kind."""

    routes: frozenset[str]
    clusters: frozenset[str]
    listeners: frozenset[str]
    policies: frozenset[str]


def visible(mesh: Snapshot, service: str) -> Visible:
    routes = frozenset(n for n, p in mesh[ROUTES].resources.items()
                       if n == service or service in p.message.services or EVERY_SERVICE in p.message.services)
    reached = mesh[ROUTES].resources
    clusters = frozenset().union(*(reached[n].refs for n in routes))
    listeners = frozenset(n for n, p in mesh[LISTENER].resources.items() if p.message.route_config in routes)
    policies = frozenset(n for n, p in mesh[AUTHZ].resources.items() if p.message.service == service)
    return Visible(routes, clusters, listeners, policies)


def mesh_names(v: Visible) -> dict[str, frozenset[str]]:
    """The sidecars' discovery stream, by type URL."""
    return {CLUSTER: v.clusters, ENDPOINTS: v.clusters, ROUTES: v.routes, AUTHZ: v.policies}


class ScopedSnapshot:
    """A snapshot seen through a scope: only `names[type_url]` of each type."""

    __slots__ = ("_source", "_names", "_fields", "_types")

    def __init__(self, source, names: Mapping[str, frozenset[str]], fields: wire.ResponseFields) -> None:
        self._source, self._names, self._fields = source, names, fields
        self._types: dict[str, TypeResources] = {}

    def __getitem__(self, type_url: str) -> TypeResources:
        found = self._types.get(type_url)
        if found is None:
            found = self._types[type_url] = self._filtered(self._source[type_url], self._names.get(type_url, ()))
        return found

    def _filtered(self, full: TypeResources, names) -> TypeResources:
        kept = {n: p for n, p in full.resources.items() if n in names}
        refs = frozenset().union(*(p.refs for p in kept.values()))
        body = self._fields.body(full.type_url, full.version, [p.any_bytes for p in kept.values()])
        return TypeResources(full.type_url, full.version, types.MappingProxyType(kept), refs, body, digest="")

    def versions(self) -> dict[str, str]:
        return self._source.versions()

    def __repr__(self) -> str:
        return f"ScopedSnapshot({ {t.rsplit('.', 1)[-1]: len(n) for t, n in self._names.items()} })"


class ScopedViews:
    """Per service, the scoped view of the current snapshot. `mesh` gives the mesh
    snapshot the scope is judged on; `names` maps a Visible to the stream's types."""

    def __init__(self, mesh: Callable[[], Snapshot | None], names: Callable[[Visible], dict[str, frozenset[str]]],
                 fields: wire.ResponseFields) -> None:
        self._mesh, self._names, self._fields = mesh, names, fields
        self._views: dict[str, tuple[object, ScopedSnapshot]] = {}

    def view(self, snapshot, service: str):
        """`snapshot` (the stream's current one) as `service` may see it."""
        if snapshot is None:
            return None
        cached = self._views.get(service)
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        mesh = self._mesh()
        scoped = ScopedSnapshot(snapshot, self._names(visible(mesh, service)) if mesh is not None else {}, self._fields)
        if len(self._views) >= _VIEWS_LIMIT:
            self._views.clear()
        self._views[service] = (snapshot, scoped)
        return scoped
