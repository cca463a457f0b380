"""Per-stream, per-type subscription state: the xDS state-of-the-world ACK/NACK
state machine, pure (no I/O, no clock, no randomness).

Rules implemented (envoyproxy xDS protocol, "ACK/NACK and resource type instance
version" and "When to send an update"):
- a version per resource type; each response carries a fresh nonce;
- a request whose response_nonce is not the latest nonce sent for its type is
  stale: ignored, state unchanged, not answered;
- an ACK (latest nonce, no error_detail) records the version sent as acked;
- a NACK (latest nonce, error_detail set) records the reason and leaves the proxy
  on its last acked version; the version it rejected is not sent again;
- the first request for a type (empty nonce) subscribes; its version_info is the
  version the proxy already holds (a reconnect resumes from it: no resend when it
  is current);
- resource_names subscribes to those names; empty means every resource (or, on
  streams whose protocol says so, none: then only "*" means every resource).
The server decides what to send from this state (ordering.py) and records each
send with `record_sent`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.config.resources import TYPE_ORDER
from meshgrpc.xds.snapshot import PackedResource

WILDCARD = "*"

SyncState = management_pb2.TypeStatus.SyncState


class Outcome(enum.Enum):
    SUBSCRIBE = "subscribe"  # first request for the type (empty nonce)
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"  # ignored


class UnknownTypeError(ValueError):
    def __init__(self, type_url: str, known=TYPE_ORDER) -> None:
        super().__init__(f"unknown resource type {type_url!r}; known: {', '.join(known)}")
        self.type_url = type_url


class TypeState:
    """What one stream subscribed to, was sent, ACKed and NACKed for one type."""

    __slots__ = ("type_url", "subscribed", "names", "sent_version", "sent_nonce", "sent_names",
                 "sent_resources", "sent_refs", "awaiting", "acked_version", "acked_refs",
                 "nack_reason", "nacked_version", "_empty_is_wildcard", "_resume")

    def __init__(self, type_url: str, *, empty_is_wildcard: bool = True, resume: bool = True) -> None:
        self.type_url = type_url
        self._empty_is_wildcard, self._resume = empty_is_wildcard, resume
        self.subscribed = False
        # Names subscribed to; None = every resource of the type (wildcard).
        self.names: frozenset[str] | None = None
        # What the proxy holds or was last sent. After a resume, `sent_version` is
        # the proxy's own version and the resources are unknown (None).
        self.sent_version = ""
        self.sent_nonce = ""
        self.sent_names: frozenset[str] | None = None
        self.sent_resources: Mapping[str, PackedResource] | None = None
        self.sent_refs: frozenset[str] | None = None
        # True from a send until its ACK or NACK: one response in flight per type.
        self.awaiting = False
        self.acked_version = ""
        self.acked_refs: frozenset[str] = frozenset()
        self.nack_reason = ""
        self.nacked_version = ""

    def on_request(self, request: discovery_pb2.DiscoveryRequest) -> Outcome:
        nonce = request.response_nonce
        if nonce != self.sent_nonce:
            return Outcome.STALE
        self.names = self._names(request.resource_names)
        if not nonce:
            return self._subscribe(request.version_info)
        self.awaiting = False
        if request.HasField("error_detail"):
            self.nack_reason = request.error_detail.message or f"code {request.error_detail.code}"
            self.nacked_version = self.sent_version
            return Outcome.NACK
        self.acked_version = self.sent_version
        self.acked_refs = self.sent_refs or frozenset()
        self.nacked_version = ""
        return Outcome.ACK

    def _names(self, requested) -> frozenset[str] | None:
        names = frozenset(requested)
        if WILDCARD in names or (not names and self._empty_is_wildcard):
            return None
        return names

    def _subscribe(self, held_version: str) -> Outcome:
        if not self._resume:
            held_version = ""
        self.subscribed = True
        self.sent_version = self.acked_version = held_version
        self.sent_names = self.names
        self.sent_resources = self.sent_refs = None
        return Outcome.SUBSCRIBE

    def record_sent(self, version: str, nonce: str, names: frozenset[str] | None,
                    resources: Mapping[str, PackedResource], refs: frozenset[str]) -> None:
        self.sent_version, self.sent_nonce, self.sent_names = version, nonce, names
        self.sent_resources, self.sent_refs = resources, refs
        self.awaiting = True

    def status(self, current_version: str) -> management_pb2.TypeStatus:
        if not self.sent_version and not self.sent_nonce:
            state = SyncState.NOT_SENT
        elif self.nacked_version and self.nacked_version == self.sent_version:
            state = SyncState.NACKED
        elif self.acked_version == current_version and not self.awaiting:
            state = SyncState.SYNCED
        else:
            state = SyncState.STALE
        return management_pb2.TypeStatus(
            type_url=self.type_url, state=state, sent_version=self.sent_version,
            acked_version=self.acked_version, error=self.nack_reason if state == SyncState.NACKED else "")

    def __repr__(self) -> str:
        return (f"TypeState({self.type_url.rsplit('.', 1)[-1]} sent={self.sent_version!r}"
                f" nonce={self.sent_nonce!r} acked={self.acked_version!r} awaiting={self.awaiting}"
                f" nacked={self.nacked_version!r})")


class StreamState:
    """Every type's state on one stream, and the stream's nonce counter.
    `type_state` is the per-type state class (delta_state.py has the other)."""

    __slots__ = ("types", "_nonces")
    type_state = TypeState

    def __init__(self, type_urls=TYPE_ORDER, **type_options) -> None:
        """`type_options` go to each type's state (TypeState: empty_is_wildcard, resume)."""
        self.types = {t: self.type_state(t, **type_options) for t in type_urls}
        self._nonces = 0

    def on_request(self, request: discovery_pb2.DiscoveryRequest) -> Outcome:
        """Applies one request; raises UnknownTypeError for a type we don't serve."""
        state = self.types.get(request.type_url)
        if state is None:
            raise UnknownTypeError(request.type_url, tuple(self.types))
        return state.on_request(request)

    def next_nonce(self) -> str:
        # Unique within the stream is all xDS asks of a nonce.
        self._nonces += 1
        return str(self._nonces)

    def statuses(self, current_versions: Mapping[str, str]) -> list[management_pb2.TypeStatus]:
        """The types the stream subscribed to (a proxy that never asks for a type,
        such as one without an inbound side, has no status for it)."""
        return [s.status(current_versions.get(t, "")) for t, s in self.types.items() if s.subscribed]
