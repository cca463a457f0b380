"""Make-before-break: which response a stream should be sent next. Pure.

xDS protocol, "Eventual consistency considerations": a proxy must never hold a
route naming a cluster it lacks. So, on one stream (aggregated discovery):
1. clusters, then endpoint sets, go first. If the target drops a cluster that the
   routes the proxy holds (last sent or last ACKed) still reference, they are sent
   as the union of the target and those still-referenced resources, under an
   interim version `<target version>+mbb`;
2. routes go only once clusters and endpoints have been answered (ACK or NACK);
3. once the routes are answered and no longer reference the dropped clusters,
   clusters and endpoints go again at the target version: removals come last.
While any type awaits its ACK/NACK, nothing more of that type is sent; while the
routes await theirs, nothing at all is sent (step 3 must not overtake them).
Which types play the parts of clusters, endpoints and routes is the stream's
`Layout` (protocol.py): meshgrpc's own by default, Envoy's for proxyless clients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping

from meshgrpc.xds.protocol import MESH, Layout
from meshgrpc.xds.snapshot import INTERIM_SUFFIX, PackedResource, Snapshot, TypeResources
from meshgrpc.xds.stream_state import TypeState


@dataclasses.dataclass(frozen=True, slots=True)
class ResponsePlan:
    """A response to send: what the server encodes and what the state records."""

    type_url: str
    version: str
    # Subscription the response answers (None = wildcard).
    names: frozenset[str] | None
    resources: Mapping[str, PackedResource]
    # Clusters referenced by these resources (route configs only).
    refs: frozenset[str]
    # Identifies the response body for the shared body cache; None means the
    # snapshot's prebuilt wildcard body is exactly this response.
    body_key: Hashable | None

    @property
    def resource_count(self) -> int:
        return len(self.resources)

    @property
    def interim(self) -> bool:
        return self.version.endswith(INTERIM_SUFFIX)


def next_response(types: Mapping[str, TypeState], snapshot: Snapshot | None,
                  layout: Layout = MESH.layout) -> ResponsePlan | None:
    """The next response for a stream whose per-type state is `types`, moving it
    towards `snapshot`; None when there is nothing to send now."""
    routes = types[layout.routes]
    if snapshot is None or routes.awaiting:
        return None
    held_refs = _held_refs(routes, snapshot[layout.routes])
    waiting = False
    for type_url in layout.first:
        state = types[type_url]
        if not state.subscribed:
            continue
        if state.awaiting:
            waiting = True
            continue
        keep = held_refs if type_url in layout.referenced else frozenset()
        plan = desired(state, snapshot[type_url], keep)
        if _differs(state, plan):
            return plan
    if waiting or not routes.subscribed:
        return None
    plan = desired(routes, snapshot[layout.routes], frozenset())
    return plan if _differs(routes, plan) else None


def desired(state: TypeState, target: TypeResources, keep_refs: frozenset[str]) -> ResponsePlan:
    """What `state`'s subscription should hold of `target`, plus (interim) the
    held resources named in `keep_refs` that the target drops."""
    names = state.names
    if names is None:
        resources = target.resources
    else:
        resources = {n: target.resources[n] for n in sorted(names) if n in target.resources}
    keep = _kept(state, target, keep_refs, resources)
    if keep:
        return _interim_plan(state, target, resources, keep)
    refs = target.refs if names is None else frozenset().union(*(r.refs for r in resources.values()))
    key = None if names is None else (target.type_url, target.version, names)
    return ResponsePlan(target.type_url, target.version, names, resources, refs, key)


def _interim_plan(state: TypeState, target: TypeResources, resources: Mapping[str, PackedResource],
                  keep: dict[str, PackedResource]) -> ResponsePlan:
    union = dict(resources)
    union.update(keep)
    union = {n: union[n] for n in sorted(union)}
    version = target.version + INTERIM_SUFFIX
    # A kept resource's content is identified by its name and the version it was packed at.
    key = (target.type_url, version, state.names, tuple((n, r.version) for n, r in sorted(keep.items())))
    return ResponsePlan(target.type_url, version, state.names, union, frozenset(), key)


def _kept(state: TypeState, target: TypeResources, keep_refs: frozenset[str],
          resources: Mapping[str, PackedResource]) -> dict[str, PackedResource]:
    if not keep_refs or state.sent_version == target.version:
        return {}
    held = _held_resources(state, target)
    names = state.names
    return {n: held[n] for n in keep_refs
            if n in held and n not in resources and (names is None or n in names)}


def _held_resources(state: TypeState, target: TypeResources) -> Mapping[str, PackedResource]:
    if state.sent_resources is not None:
        return state.sent_resources
    # Resumed after a reconnect: we know the proxy's version, not its resources;
    # they are the target's when the version is current, unknown otherwise.
    return target.resources if state.sent_version == target.version else {}


def _held_refs(routes: TypeState, target: TypeResources) -> frozenset[str]:
    """Clusters the routes the proxy holds, or was last sent, reference."""
    sent = routes.sent_refs
    if sent is None:
        sent = target.refs if routes.sent_version == target.version else frozenset()
    return sent | routes.acked_refs


def _differs(state: TypeState, plan: ResponsePlan) -> bool:
    # Same version and subscription as last sent (even if NACKed): nothing to send.
    return plan.version != state.sent_version or plan.names != state.sent_names
