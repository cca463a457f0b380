"""How a proxy authenticates to the control plane, from its flags:

- `--service S`: it joins as a workload of S. Its token (--token-file or
  MESHGRPC_TOKEN: a join token for S, or an admin token) buys a first certificate
  over the TLS port; from then on its certificate is its credential, on the mTLS
  port, for the discovery stream and for renewing itself. It sees S's config only.
- no --service: the token alone (by default the local control plane's admin
  token), on the TLS port; an operator's token sees the whole mesh.
- `--insecure`: plaintext, for a control plane run with --insecure.
"""

from __future__ import annotations

from meshgrpc.control_channel import credentials_from_args
from meshgrpc.identity.issuer import GrpcIssuer
from meshgrpc.identity.workload import WorkloadIdentity


def discovery_credentials(args):
    """(the workload identity to join with, or None; what opens discovery channels).
    Raises control_channel.CredentialError."""
    credentials = credentials_from_args(args)
    service = getattr(args, "service", "")
    if not service or credentials.insecure:
        return None, credentials
    identity = WorkloadIdentity(service, GrpcIssuer(args.control_plane, service, credentials).issue)
    return identity, identity
