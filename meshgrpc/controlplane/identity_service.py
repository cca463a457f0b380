"""The management API's identity calls: certificates for workloads and tokens for
operators. The Management servicer delegates them here.

IssueCertificate signs a CSR the caller made (its key never leaves it) for the
caller's own service: a workload authenticated by its join token (joining) or by
its current certificate (renewing), or an admin naming the service. The new
certificate records the token the identity rests on, so a revoked join token
stops renewals (tokens.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from google.protobuf import timestamp_pb2

from meshapi.v1 import management_pb2
from meshgrpc.controlplane.access import ADMIN, Principal
from meshgrpc.controlplane.trust import Trust
from meshgrpc.errors import ConfigError, FailedPrecondition, FieldError, PermissionDenied
from meshgrpc.identity import spiffe, tokens
from meshgrpc.identity.tokens import TokenRecord

log = logging.getLogger(__name__)

JOIN_TOKEN_TTL = 24 * 3600.0


class IdentityService:
    """`trust` None: an --insecure control plane, which has no CA and no tokens."""

    def __init__(self, trust: Trust | None, mtls_port: int = 0, clock: Callable[[], float] = time.time) -> None:
        self._trust, self.mtls_port, self._clock = trust, mtls_port, clock

    def _needs_trust(self) -> Trust:
        if self._trust is None:
            raise FailedPrecondition("the control plane runs --insecure: it has no CA and no tokens")
        return self._trust

    def issue_certificate(self, request: management_pb2.IssueCertificateRequest,
                          principal: Principal) -> management_pb2.IssueCertificateResponse:
        trust = self._needs_trust()
        service = _service_for(request.service, principal)
        issued = trust.ca.issue_workload(request.csr, service, trust.settings.cert_lifetime, self._clock(),
                                         token_id=principal.token_id if principal.role != ADMIN else "")
        log.info("issued a certificate for %s to %s, valid until %s", issued.spiffe_id, principal.describe(),
                 time.strftime("%H:%M:%S", time.localtime(issued.not_after)))
        return management_pb2.IssueCertificateResponse(
            certificate_chain=issued.chain_pem, ca_bundle=trust.ca.bundle_pem, spiffe_id=issued.spiffe_id,
            not_before=_timestamp(issued.not_before), not_after=_timestamp(issued.not_after),
            mtls_port=self.mtls_port)

    def create_token(self, request: management_pb2.CreateTokenRequest) -> management_pb2.CreateTokenResponse:
        trust = self._needs_trust()
        role, service = _role_and_service(request)
        ttl = request.ttl.ToTimedelta().total_seconds() if request.HasField("ttl") else \
            (JOIN_TOKEN_TTL if role == tokens.JOIN else 0.0)
        if ttl < 0:
            raise ConfigError([FieldError("ttl", "must not be negative")])
        record, secret = trust.tokens.create(role, service, ttl)
        log.info("created %s token %s%s", role, record.id, f" for service {service}" if service else "")
        return management_pb2.CreateTokenResponse(token=token_message(record), secret=secret)

    def revoke_token(self, request: management_pb2.RevokeTokenRequest) -> management_pb2.RevokeTokenResponse:
        trust = self._needs_trust()
        if not request.id:
            raise ConfigError([FieldError("id", "required")])
        record = trust.tokens.revoke(request.id)
        log.info("revoked %s token %s", record.role, record.id)
        return management_pb2.RevokeTokenResponse(token=token_message(record))

    def list_tokens(self) -> management_pb2.ListTokensResponse:
        return management_pb2.ListTokensResponse(tokens=[token_message(r) for r in self._needs_trust().tokens.records()])


def _service_for(requested: str, principal: Principal) -> str:
    if principal.role == ADMIN:
        if problem := spiffe.service_problem(requested):
            raise ConfigError([FieldError("service", problem + " (an admin names the service to certify)")])
        return requested
    if requested and requested != principal.service:
        raise PermissionDenied(f"a workload of service {principal.service} may get a certificate only for "
                               f"itself, not for {requested!r}")
    return principal.service


def _role_and_service(request: management_pb2.CreateTokenRequest) -> tuple[str, str]:
    if request.role and request.service:
        raise ConfigError([FieldError("role", "give either role (read, admin) or service (a join token), not both")])
    if request.service:
        if problem := spiffe.service_problem(request.service):
            raise ConfigError([FieldError("service", problem)])
        return tokens.JOIN, request.service
    if request.role not in (tokens.READ, tokens.ADMIN):
        raise ConfigError([FieldError("role", f"{request.role!r}: must be read or admin (or give service "
                                              "for a join token)")])
    return request.role, ""


def token_message(record: TokenRecord) -> management_pb2.Token:
    token = management_pb2.Token(id=record.id, role=record.role, service=record.service,
                                 created=_timestamp(record.created), revoked=record.revoked)
    if record.expires:
        token.expires.CopyFrom(_timestamp(record.expires))
    return token


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts
