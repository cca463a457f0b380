"""How a proxy authenticates to the control plane, from its flags:

- `--service S`: it joins as a workload of S. Its token (--token-file or
  MESHGRPC_TOKEN: a join token for S, or an admin token) buys a first certificate
  over the TLS port; from then on its certificate is its credential, on the mTLS
  port, for the discovery stream and for renewing itself. It sees S's config only.
- no --service: the token alone (by default the local control plane's admin
  token), on the TLS port; an operator's token sees the whole mesh.
- `--insecure`: plaintext, for a control plane run with --insecure.

Each is a grpcwire Dialer (the proxy imports no grpcio): TLS checked against the
CA bundle (--ca-file) and the host name dialled; the token sent as
`authorization` metadata read again for each call (control_channel.TokenSource);
a workload's certificate taken afresh at each connection (WorkloadDialer).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from google.protobuf.message import Message

from meshgrpc.control_channel import Keepalive, TokenSource, read_ca_bundle, ssl_context
from meshgrpc.grpcwire import Call, Dialer
from meshgrpc.identity.issuer import Issuer
from meshgrpc.identity.workload import WorkloadIdentity
from meshgrpc.xds.client import StreamOpener, control_plane_dialer


def discovery_dialer(args, keepalive: Keepalive) -> tuple[WorkloadIdentity | None, StreamOpener]:
    """(the workload identity to join with, or None; what opens discovery streams).
    Raises control_channel.CredentialError."""
    if getattr(args, "insecure", False):
        return None, control_plane_dialer(keepalive)
    service = getattr(args, "service", "")
    if not service:
        return None, token_dialer(args, keepalive)
    identity = WorkloadIdentity(service, Issuer(args.control_plane, service, token_dialer(args)).issue)
    return identity, WorkloadDialer(identity, keepalive)


def token_dialer(args, keepalive: Keepalive | None = None) -> Dialer:
    """The TLS port with the token of --token-file (or MESHGRPC_TOKEN, or the local
    admin token) on every call. Raises control_channel.CredentialError."""
    tokens = TokenSource(getattr(args, "token_file", None))
    return control_plane_dialer(keepalive, ssl_context=ssl_context(read_ca_bundle(getattr(args, "ca_file", None))),
                                metadata=tokens.metadata)


class WorkloadDialer:
    """Opens discovery streams on the control plane's mTLS port with the workload's
    certificate, the current one at each connection: a stream redialled after a
    renewal presents the renewed certificate (the one it replaced may have expired)."""

    def __init__(self, identity: WorkloadIdentity, keepalive: Keepalive) -> None:
        self.identity = identity
        self.dialer = control_plane_dialer(keepalive, ssl_context=identity.control_plane_context)

    def open_stream(self, target: str, method: str, response_class: type[Message],
                    **kwargs) -> AbstractAsyncContextManager[Call]:
        return self.dialer.open_stream(self.identity.mtls_target(target), method, response_class, **kwargs)

    def __repr__(self) -> str:
        return f"<WorkloadDialer {self.identity!r} {self.dialer!r}>"
