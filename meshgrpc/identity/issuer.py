"""How a workload asks the control plane for a certificate: IssueCertificate on
the management API, with its join token on the TLS port (joining) or with its
current certificate on the mTLS port (renewing), each control-plane address in
turn until one answers. The seam `WorkloadIdentity` calls (`issue(csr, current)`),
so the proxy's grpcio-free client can take this over without touching renewal.
"""

from __future__ import annotations

import dataclasses
import logging

import grpc

from meshapi.v1 import management_pb2, management_pb2_grpc
from meshgrpc.addresses import split_address, split_targets
from meshgrpc.control_channel import ClientCredentials, client_options

log = logging.getLogger(__name__)

DEADLINE = 10.0
# Answers that will not change by asking again with the same credential.
REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)


class IssueFailed(Exception):
    """No certificate: `refused` when the control plane said no (the credential is
    bad or revoked), not when it could not be reached."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
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


class GrpcIssuer:
    """IssueCertificate over grpcio to the `targets` ("host:port[,host:port...]")."""

    def __init__(self, targets: str, service: str, joining: ClientCredentials) -> None:
        """`joining`: the CA bundle and join (or admin) token used before there is a certificate."""
        self.targets, self.service, self._joining = split_targets(targets), service, joining

    async def issue(self, csr_pem: bytes, current: Held | None) -> management_pb2.IssueCertificateResponse:
        request = management_pb2.IssueCertificateRequest(csr=csr_pem, service=self.service)
        last: IssueFailed | None = None
        for target in self.targets:
            if current is None:
                credentials, address = self._joining, target
            else:
                credentials = ClientCredentials(ca_bundle=current.ca_bundle, key_pem=current.key_pem,
                                                chain_pem=current.chain_pem)
                address = mtls_target(target, current.mtls_port)
            try:
                async with credentials.aio_channel(address, options=client_options()) as channel:
                    return await management_pb2_grpc.ManagementStub(channel).IssueCertificate(
                        request, timeout=DEADLINE)
            except grpc.aio.AioRpcError as e:
                last = IssueFailed(e.code(), e.details() or "")
                if last.refused:
                    raise last from None
                log.warning("certificate from %s: %s", address, last)
        raise last
