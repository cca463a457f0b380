"""TLS under the relay's HTTP/2 connections: what the proxy checks once per
connection, at the handshake, on both sides.

The codec never sees TLS: asyncio's SSL transport sits between the socket and the
connection's Protocol (h2side.py), so a TLS connection relays exactly like an
h2c one and costs its handshake once, not per call. The contexts come from the
proxy's workload certificate (meshgrpc/identity/workload.py: TLS 1.3 only, ALPN
h2, peers verified against the mesh's CA, reloaded in place on renewal); what is
left to check here is who the peer is (SPIFFE ID, X509-SVID: the one URI SAN)
and that ALPN chose h2 (RFC 9113 §3.2: HTTP/2 over TLS is negotiated by ALPN).
"""

from __future__ import annotations

import dataclasses
import ssl

from meshgrpc.identity import spiffe
from meshgrpc.identity.workload import peer_spiffe_id

ALPN_H2 = "h2"


@dataclasses.dataclass(frozen=True, slots=True)
class Peer:
    """The far end of one TLS connection, as read at its handshake."""

    spiffe_id: str  # "" when its certificate carries none (or there is no TLS)
    tls_version: str  # "TLSv1.3"; "" without TLS
    alpn: str  # the negotiated protocol, "" when none
    not_after: str = ""  # its certificate's expiry as ssl reports it ("Dec  1 13:54:17 2026 GMT")

    def describe(self) -> str:
        """For the one log line per connection."""
        who = self.spiffe_id or "without a SPIFFE ID"
        until = f" (certificate valid until {self.not_after})" if self.not_after else ""
        return f"{self.tls_version}, peer {who}{until}"


PLAINTEXT_PEER = Peer("", "", "")


def peer_of(transport) -> Peer:
    """Who is at the other end of `transport` (PLAINTEXT_PEER without TLS)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return PLAINTEXT_PEER
    certificate = ssl_object.getpeercert() or {}
    return Peer(peer_spiffe_id(ssl_object), ssl_object.version() or "", ssl_object.selected_alpn_protocol() or "",
                certificate.get("notAfter", ""))


class UpstreamTls:
    """Mutual TLS for the proxy's connections to MUTUAL_TLS clusters: one client
    context for every such connection, and the check of each peer against the
    identity its cluster expects."""

    def __init__(self, context: ssl.SSLContext, own_spiffe_id: str) -> None:
        self.context = context
        # A cluster's default peer is its service in the proxy's own trust domain.
        self.trust_domain = own_spiffe_id[len(spiffe.SCHEME):].split("/", 1)[0]

    def expected(self, cluster_name: str, peer_identity: str) -> str:
        """The SPIFFE ID a cluster's endpoints must present (Transport.peer_identity)."""
        return peer_identity or spiffe.service_id(self.trust_domain, cluster_name)

    @staticmethod
    def problem(peer: Peer, expected: str) -> str | None:
        """Why a connection to `peer` must not carry calls, or None when it may."""
        if peer.spiffe_id != expected:
            presented = peer.spiffe_id or "no SPIFFE ID"
            return f"peer identity mismatch: expected {expected}, the endpoint presented {presented}"
        if peer.alpn != ALPN_H2:
            return f"the endpoint did not negotiate ALPN h2 (got {peer.alpn or 'none'})"
        return None

    def __repr__(self) -> str:
        return f"UpstreamTls(trust_domain={self.trust_domain!r})"


NO_CERTIFICATE = ("cluster {cluster} needs MUTUAL_TLS and this proxy has no workload certificate "
                  "(start it with --service and --token-file)")
