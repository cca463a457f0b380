"""How a workload asks the control plane for a certificate: IssueCertificate on
the management API, with its join token on the TLS port (joining) or with its
current certificate on the mTLS port (renewing), each control-plane address in
turn until one answers. The seam `WorkloadIdentity` calls (`issue(csr, current)`).

On meshgrpc.grpcwire, so the proxy, which joins and renews this way, imports no
grpcio (`meshgrpc bootstrap` uses it too).
"""

from __future__ import annotations

import dataclasses
import logging

from meshapi.v1 import management_pb2
from meshgrpc import grpc_codes
from meshgrpc.addresses import split_address, split_targets
from meshgrpc.control_channel import MAX_MESSAGE_BYTES, ClientCredentials
from meshgrpc.grpcwire import Dialer, RpcError
from meshgrpc.grpcwire import status as st

log = logging.getLogger(__name__)

METHOD = "/meshapi.v1.Management/IssueCertificate"
DEADLINE = 10.0
# Answers that will not change by asking again with the same credential.
REFUSALS = (st.UNAUTHENTICATED, st.PERMISSION_DENIED, st.INVALID_ARGUMENT, st.FAILED_PRECONDITION)


class IssueFailed(Exception):
    """No certificate: `code` is the gRPC status code (a number, meshgrpc.grpc_codes);
    `refused` when the control plane said no (the credential is bad or revoked),
    not when it could not be reached."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{grpc_codes.name(code)}: {message}")
        self.code, self.refused = code, code in REFUSALS


@dataclasses.dataclass(frozen=True)
class Held:
    """What renewing needs of the current certificate."""

    key_pem: bytes
    chain_pem: bytes
    ca_bundle: bytes
    mtls_port: int


def mtls_target(target: str, port: int) -> str:
    host, _ = split_address(target)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Issuer:
    """IssueCertificate to the `targets` ("host:port[,host:port...]")."""

    def __init__(self, targets: str, service: str, joining: Dialer) -> None:
        """`joining`: reaches the TLS port with the join (or admin) token, before there
        is a certificate (identity/joining.py token_dialer)."""
        self.targets, self.service, self._joining = split_targets(targets), service, joining

    async def issue(self, csr_pem: bytes, current: Held | None) -> management_pb2.IssueCertificateResponse:
        request = management_pb2.IssueCertificateRequest(csr=csr_pem, service=self.service)
        dialer = self._joining if current is None else _renewing(current)
        last: IssueFailed | None = None
        for target in self.targets:
            address = target if current is None else mtls_target(target, current.mtls_port)
            try:
                return await dialer.unary(address, METHOD, request, management_pb2.IssueCertificateResponse,
                                          timeout=DEADLINE)
            except RpcError as e:
                last = IssueFailed(e.code, e.message)
                if last.refused:
                    raise last from None
                log.warning("certificate from %s: %s", address, last)
        raise last


def _renewing(current: Held) -> Dialer:
    """The mTLS port, presenting the certificate being renewed."""
    credentials = ClientCredentials(ca_bundle=current.ca_bundle, key_pem=current.key_pem,
                                    chain_pem=current.chain_pem)
    return Dialer(ssl_context=credentials.ssl_context(), max_message_bytes=MAX_MESSAGE_BYTES)
