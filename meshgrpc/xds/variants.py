"""The two variants of the discovery stream, as the session drives them: each
keeps its per-stream state, decides the next response (pure) and encodes it
from the snapshot's shared bytes (compare go-control-plane's server split into
sotw/ and delta/). `Session` (session.py) runs either over any StreamIO.

- `Sotw`: state of the world (stream_state.py, ordering.py): each response is a
  type's whole subscribed set, identified by the type's version.
- `Delta`: incremental (delta_state.py): per-resource versions, only what changed.
"""

from __future__ import annotations

from typing import Protocol

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.xds import wire
from meshgrpc.xds.delta_state import DeltaPlan, DeltaStreamState, next_delta
from meshgrpc.xds.ordering import ResponsePlan, next_response
from meshgrpc.xds.protocol import MESH, DiscoveryProtocol
from meshgrpc.xds.snapshot import Snapshot
from meshgrpc.xds.stream_state import StreamState

SETTLED = (management_pb2.TypeStatus.SYNCED, management_pb2.TypeStatus.NOT_SENT)


class Variant(Protocol):
    name: str
    protocol: DiscoveryProtocol
    state: object

    def on_request(self, request) -> str:
        """Applies one request; returns what it was: "subscribe", "ack", "nack" or
        "stale" (ignored; nothing to send changed). Raises UnknownTypeError for a
        type the server does not serve."""

    def next_plan(self, snapshot: Snapshot | None):
        """The next response to send towards `snapshot`, or None."""

    def encode(self, plan, snapshot: Snapshot, bodies: wire.BodyCache) -> bytes:
        """Records `plan` as sent (with a fresh nonce) and returns its bytes."""

    def statuses(self, snapshot: Snapshot | None) -> list[management_pb2.TypeStatus]: ...

    def in_sync(self, snapshot: Snapshot | None) -> bool:
        """Every type SYNCED, or NOT_SENT (nothing of it was ever sent)."""


class Sotw:
    """State of the world, in either protocol (meshgrpc's own, Envoy's ADS)."""

    name = "sotw"

    def __init__(self, protocol: DiscoveryProtocol = MESH) -> None:
        self.protocol = protocol
        self.state = StreamState(protocol.type_urls, empty_is_wildcard=protocol.empty_is_wildcard,
                                 resume=protocol.resume)

    def on_request(self, request) -> str:
        return self.state.on_request(request).value

    def next_plan(self, snapshot: Snapshot | None) -> ResponsePlan | None:
        return next_response(self.state.types, snapshot, self.protocol.layout)

    def encode(self, plan: ResponsePlan, snapshot: Snapshot, bodies: wire.BodyCache) -> bytes:
        nonce = self.state.next_nonce()
        # Recorded before the write: the ACK may be read while the write awaits.
        self.state.types[plan.type_url].record_sent(plan.version, nonce, plan.names, plan.resources, plan.refs)
        fields = self.protocol.response
        if plan.body_key is None:
            body = snapshot[plan.type_url].body
        else:
            body = bodies.get(plan.body_key, lambda: fields.body(
                plan.type_url, plan.version, [r.any_bytes for r in plan.resources.values()]))
        return body + fields.nonce_field(nonce)

    def statuses(self, snapshot: Snapshot | None) -> list[management_pb2.TypeStatus]:
        return self.state.statuses(snapshot.versions() if snapshot else {})

    def in_sync(self, snapshot: Snapshot | None) -> bool:
        return all(t.state in SETTLED for t in self.statuses(snapshot))


class Delta:
    """Incremental discovery: meshgrpc's own protocol only (gRPC clients speak SotW)."""

    name = "delta"
    protocol = MESH

    def __init__(self) -> None:
        self.state = DeltaStreamState()

    def on_request(self, request: discovery_pb2.DeltaDiscoveryRequest) -> str:
        return self.state.on_request(request).value

    def next_plan(self, snapshot: Snapshot | None) -> DeltaPlan | None:
        return next_delta(self.state.types, snapshot)

    def encode(self, plan: DeltaPlan, snapshot: Snapshot, bodies: wire.BodyCache) -> bytes:
        nonce = self.state.next_nonce()
        self.state.types[plan.type_url].record_sent(plan, nonce)
        body = bodies.get(plan.body_key, lambda: wire.delta_response_body(
            plan.type_url, plan.system_version, [r.delta_field for r in plan.updates], plan.removed))
        return body + wire.delta_nonce_field(nonce)

    def statuses(self, snapshot: Snapshot | None) -> list[management_pb2.TypeStatus]:
        return self.state.statuses(snapshot)

    def in_sync(self, snapshot: Snapshot | None) -> bool:
        return self.state.in_sync(snapshot)
