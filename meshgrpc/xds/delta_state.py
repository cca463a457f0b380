"""Per-stream, per-type state of the incremental (delta) discovery stream, and
the pure decision of what to send next. No I/O, no clock.

Rules implemented (envoyproxy xDS protocol, "Incremental xDS"):
- the subscription changes by name with every request, whatever its nonce;
  "*" subscribes to every resource of the type; the first request for a type
  subscribes to exactly what it names and may carry initial_resource_versions,
  what the proxy already holds (a reconnect, or a move to another replica, is
  sent only what differs);
- every resource has its own version (a digest of its content, snapshot.py);
  a response carries the resources whose version the proxy does not hold and the
  names it must forget (removed, or subscribed but never existing);
- a type's first request is always answered (with nothing, when nothing is in
  its scope), so the proxy learns the type's version and that it is served;
- one response in flight per type; a request whose response_nonce is that
  response's ACKs it (the proxy now holds what was sent) or, with error_detail,
  NACKs it (it keeps what it held; the rejected versions are not sent again);
  another nonce is stale for ACK purposes.

Make-before-break (as ordering.py for state of the world): clusters and endpoint
sets go before route configs; a route config goes only once clusters and
endpoints are not awaiting an answer; and a cluster or endpoint set that a route
config the proxy holds or was sent still references is not removed until the
routes no longer reference it. Adding a cluster never breaks a route, so
clusters and endpoints may still be sent while routes await their answer: a
proxy that subscribes to the clusters a new route reaches (per-proxy scoping)
gets them while it holds that route back.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections.abc import Mapping

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.config.resources import AUTHZ, CLUSTER, ENDPOINTS, ROUTES
from meshgrpc.xds.snapshot import PackedResource, Snapshot, TypeResources
from meshgrpc.xds.stream_state import StreamState

WILDCARD = "*"
ABSENT = ""   # the version recorded for a name sent in removed_resources
_SHARED_LIMIT = 4096


def _shared(names: set[str] | frozenset[str]) -> frozenset[str]:
    """One frozenset per distinct subscription, shared by every stream that has it
    (proxies on the same route config subscribe to the same names); bounded."""
    key = frozenset(names)
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()
        found = _SHARED[key] = key
    return found


_SHARED: dict[frozenset[str], frozenset[str]] = {}

SyncState = management_pb2.TypeStatus.SyncState


class Outcome(enum.Enum):
    SUBSCRIBE = "subscribe"   # the subscription changed (no answer to a response)
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"           # nothing changed


@dataclasses.dataclass(frozen=True, slots=True)
class DeltaPlan:
    """One delta response: the resources to send and the names to remove."""

    type_url: str
    system_version: str
    updates: tuple[PackedResource, ...]
    removed: tuple[str, ...]

    @property
    def resource_count(self) -> int:
        return len(self.updates)

    @property
    def body_key(self) -> tuple:
        # Identifies the body for the shared body cache: every stream sent the same
        # changes shares one serialization.
        return ("delta", self.type_url, self.system_version, tuple((r.name, r.hash) for r in self.updates),
                self.removed)


class DeltaTypeState:
    """What one stream subscribes to, holds, was sent and rejected, for one type.

    Kept small (a control plane holds one per type for each of thousands of
    proxies): subscription sets are shared between streams (`_shared`), names
    are interned, and the dicts used only around a send or a NACK exist only then.
    """

    __slots__ = ("type_url", "subscribed", "answered", "wildcard", "names", "held", "held_refs", "sent",
                 "sent_refs", "sent_system_version", "nonce", "awaiting", "rejected", "nack_reason",
                 "acked_system_version")

    def __init__(self, type_url: str) -> None:
        self.type_url = type_url
        self.subscribed = False
        self.answered = False    # the first request has had its response
        self.wildcard = False
        self.names: frozenset[str] = frozenset()
        # name -> version the proxy holds, or ABSENT for a subscribed name it was
        # told does not exist.
        self.held: dict[str, str] = {}
        # Route configs only: the clusters each held one references (None while
        # unknown: resumed at a version the snapshot no longer has).
        self.held_refs: dict[str, frozenset[str] | None] | None = {} if type_url == ROUTES else None
        # The response in flight: name -> version sent (ABSENT for a removal).
        self.sent: dict[str, str] | None = None
        self.sent_refs: dict[str, frozenset[str]] | None = None
        self.sent_system_version = ""
        self.nonce = ""
        self.awaiting = False
        self.rejected: dict[str, str] | None = None
        self.nack_reason = ""
        self.acked_system_version = ""

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def on_request(self, request: discovery_pb2.DeltaDiscoveryRequest) -> Outcome:
        first = not self.subscribed
        changed = self._resubscribe(request, first)
        nonce = request.response_nonce
        if not nonce or nonce != self.nonce or not self.awaiting:
            return Outcome.SUBSCRIBE if changed else Outcome.STALE
        self.awaiting = False
        sent, self.sent, sent_refs, self.sent_refs = self.sent or {}, None, self.sent_refs or {}, None
        if request.HasField("error_detail"):
            self.nack_reason = request.error_detail.message or f"code {request.error_detail.code}"
            self.rejected = {**(self.rejected or {}), **sent}
            return Outcome.NACK
        for name, version in sent.items():
            if version == ABSENT and name not in self.names:
                self._forget(name)
            else:
                self.held[name] = version
                if self.held_refs is not None:
                    self.held_refs[name] = sent_refs.get(name, frozenset())
        self.acked_system_version = self.sent_system_version
        self.nack_reason = ""
        return Outcome.ACK

    def _forget(self, name: str) -> None:
        self.held.pop(name, None)
        if self.held_refs is not None:
            self.held_refs.pop(name, None)

    def _resubscribe(self, request: discovery_pb2.DeltaDiscoveryRequest, first: bool) -> bool:
        self.subscribed = True
        before = (self.wildcard, self.names)
        added = {sys.intern(n) for n in request.resource_names_subscribe}
        dropped = set(request.resource_names_unsubscribe)
        if WILDCARD in added or WILDCARD in dropped:
            self.wildcard = WILDCARD in added
        added.discard(WILDCARD)
        dropped.discard(WILDCARD)
        if added or dropped:
            self.names = _shared((self.names | added) - dropped)
        for name in dropped:
            self._forget(name)
        if first:
            self.held = {sys.intern(n): sys.intern(v) for n, v in request.initial_resource_versions.items()
                         if self.wants(n)}
            if self.held_refs is not None:
                self.held_refs = {n: None for n in self.held}
        return first or before != (self.wildcard, self.names)

    def record_sent(self, plan: DeltaPlan, nonce: str) -> None:
        self.sent = {r.name: r.hash for r in plan.updates}
        self.sent.update((name, ABSENT) for name in plan.removed)
        if self.held_refs is not None:
            self.sent_refs = {r.name: r.refs for r in plan.updates}
        self.sent_system_version, self.nonce, self.awaiting = plan.system_version, nonce, True
        self.answered = True

    def changes(self, target: TypeResources, keep: frozenset[str] | None) -> DeltaPlan | None:
        """What the proxy lacks of `target`, its scope; `keep` are held names not to
        remove yet (None: none may be removed)."""
        if not self.subscribed:
            return None
        resources, held, rejected = target.resources, self.held, self.rejected or {}
        wanted = resources if self.wildcard else {n: resources[n] for n in self.names if n in resources}
        updates = tuple(r for n, r in sorted(wanted.items()) if held.get(n) != r.hash and rejected.get(n) != r.hash)
        gone = [] if keep is None else [n for n, v in held.items() if v != ABSENT and n not in wanted and n not in keep]
        absent = [n for n in self.names if n not in resources and n not in held]
        removed = tuple(sorted(n for n in set(gone) | set(absent) if rejected.get(n) != ABSENT))
        if not updates and not removed and self.answered:
            return None
        return DeltaPlan(target.type_url, target.version, updates, removed)

    def settled(self, target: TypeResources, keep: frozenset[str] | None) -> bool:
        """True when status() would say SYNCED or NOT_SENT, found without building a
        plan or a status: the control plane asks it of every stream at every
        publication (convergence timing), so it stops at the first difference."""
        if not self.subscribed or (not self.nonce and not self.held):
            return True
        if self.awaiting or not self.answered:
            return False
        resources, held, rejected = target.resources, self.held, self.rejected or {}
        for name in (resources if self.wildcard else self.names):
            current = resources.get(name)
            if current is None:
                if name not in held and rejected.get(name) != ABSENT:
                    return False   # to be told it does not exist
            elif held.get(name) != current.hash:
                return False       # lacking it, or rejected it (NACKED)
        if keep is None:
            return True
        return not any(version != ABSENT and name not in keep and not (name in resources and self.wants(name))
                       and rejected.get(name) != ABSENT for name, version in held.items())

    def route_refs(self, target: TypeResources) -> frozenset[str] | None:
        """Clusters the route configs the proxy holds or was sent reference; None when unknown."""
        refs: set[str] = set()
        for name, version in self.held.items():
            if version == ABSENT:
                continue
            known = self.held_refs.get(name)
            if known is None:
                current = target.resources.get(name)
                if current is None or current.hash != version:
                    return None
                known = current.refs
            refs |= known
        for found in (self.sent_refs or {}).values():
            refs |= found
        return frozenset(refs)

    def status(self, target: TypeResources, in_sync: bool) -> management_pb2.TypeStatus:
        if not self.subscribed or (not self.nonce and not self.held):
            state = SyncState.NOT_SENT
        elif self.rejected and any(self.rejected.get(n) == r.hash for n, r in target.resources.items()
                                   if self.wants(n)):
            state = SyncState.NACKED
        elif in_sync and not self.awaiting:
            state = SyncState.SYNCED
        else:
            state = SyncState.STALE
        sent = target.version if state == SyncState.SYNCED else self.sent_system_version
        acked = target.version if state == SyncState.SYNCED else self.acked_system_version
        return management_pb2.TypeStatus(type_url=self.type_url, state=state, sent_version=sent, acked_version=acked,
                                         error=self.nack_reason if state == SyncState.NACKED else "")

    def __repr__(self) -> str:
        scope = "*" if self.wildcard else len(self.names)
        return (f"DeltaTypeState({self.type_url.rsplit('.', 1)[-1]} scope={scope} held={len(self.held)}"
                f" awaiting={self.awaiting} nonce={self.nonce!r} rejected={len(self.rejected or ())})")


class DeltaStreamState(StreamState):
    """Every type's delta state on one stream, and the stream's nonce counter."""

    __slots__ = ()
    type_state = DeltaTypeState

    def statuses(self, snapshot: Snapshot | None) -> list[management_pb2.TypeStatus]:
        if snapshot is None:
            return []
        keep = self.types[ROUTES].route_refs(snapshot[ROUTES])
        return [s.status(snapshot[t], s.changes(snapshot[t], keep if t != ROUTES else frozenset()) is None)
                for t, s in self.types.items() if s.subscribed]

    def in_sync(self, snapshot: Snapshot | None) -> bool:
        """Every type's status() SYNCED or NOT_SENT (statuses(), without building them)."""
        if snapshot is None:
            return True
        keep = self.types[ROUTES].route_refs(snapshot[ROUTES])
        return all(s.settled(snapshot[t], keep if t != ROUTES else frozenset()) for t, s in self.types.items())


def next_delta(types: Mapping[str, DeltaTypeState], snapshot: Snapshot | None) -> DeltaPlan | None:
    """The next delta response for a stream in state `types`, towards `snapshot`
    (make-before-break; see the module docstring); None when nothing is due."""
    if snapshot is None:
        return None
    routes = types[ROUTES]
    keep = routes.route_refs(snapshot[ROUTES])
    for type_url in (CLUSTER, ENDPOINTS, AUTHZ):
        state = types.get(type_url)
        if state is not None and not state.awaiting:
            plan = state.changes(snapshot[type_url], keep)
            if plan is not None:
                return plan
    if routes.awaiting or types[CLUSTER].awaiting or types[ENDPOINTS].awaiting:
        return None
    return routes.changes(snapshot[ROUTES], frozenset())
