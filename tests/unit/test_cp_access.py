"""Who may call what: every method of the control plane's services has a rule,
tokens and certificates become principals, and refusals say what was needed."""

from __future__ import annotations

import time

import pytest

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.controlplane import access
from meshgrpc.errors import PermissionDenied, Unauthenticated
from meshgrpc.identity import tokens
from meshgrpc.identity.ca import CertificateAuthority, make_csr, new_key
from meshgrpc.identity.tokens import TokenStore


def test_every_method_served_on_the_port_has_a_rule():
    from envoy.service.discovery.v3 import ads_pb2
    methods = [f"/{s.full_name}/{m.name}" for d in (management_pb2.DESCRIPTOR, discovery_pb2.DESCRIPTOR,
                                                   ads_pb2.DESCRIPTOR)
               for s in d.services_by_name.values() for m in s.methods]
    served = [m for m in methods if not m.endswith("/DeltaAggregatedResources")]   # ADS: state of the world only
    assert [m for m in served if m not in access.RULES] == []
    assert all(set(r.roles) <= {tokens.ADMIN, tokens.READ, access.WORKLOAD} for r in access.RULES.values())


@pytest.fixture
def authenticator(tmp_path):
    return access.Authenticator(TokenStore(str(tmp_path / "tokens.json")), "mesh.local")


def test_tokens_become_principals_with_their_role(authenticator):
    _, admin = authenticator.tokens.create(tokens.ADMIN)
    join_record, join = authenticator.tokens.create(tokens.JOIN, "greeter")
    assert authenticator.authenticate([("authorization", f"Bearer {admin}")], {}).role == tokens.ADMIN
    workload = authenticator.authenticate([("authorization", f"Bearer {join}")], {})
    assert (workload.role, workload.service, workload.token_id) == (access.WORKLOAD, "greeter", join_record.id)
    with pytest.raises(Unauthenticated, match="no credential"):
        authenticator.authenticate([("authorization", "Basic x")], {})


def test_a_certificate_is_a_workload_of_its_service_while_its_token_stands(authenticator):
    ca = CertificateAuthority.create("mesh.local", time.time())
    record, _ = authenticator.tokens.create(tokens.JOIN, "greeter")
    issued = ca.issue_workload(make_csr(new_key()), "greeter", 60, time.time(), record.id)
    context = {"x509_pem_cert": [issued.chain_pem]}
    principal = authenticator.authenticate([], context)
    assert (principal.role, principal.service, principal.via) == (access.WORKLOAD, "greeter", "certificate")
    authenticator.tokens.revoke(record.id)
    with pytest.raises(Unauthenticated, match=f"issued on token {record.id}, which is revoked"):
        authenticator.authenticate([], context)
    foreign = CertificateAuthority.create("other.domain", time.time())
    other = foreign.issue_workload(make_csr(new_key()), "greeter", 60, time.time())
    with pytest.raises(Unauthenticated, match="is not a workload of trust domain mesh.local"):
        authenticator.authenticate([], {"x509_pem_cert": [other.chain_pem]})


@pytest.mark.parametrize("rule, principal, allowed", [
    (access.Rules.ADMIN, access.Principal(tokens.ADMIN, token_id="a"), True),
    (access.Rules.ADMIN, access.Principal(tokens.READ, token_id="r"), False),
    (access.Rules.READ, access.Principal(tokens.READ, token_id="r"), True),
    (access.Rules.READ, access.Principal(access.WORKLOAD, "greeter", "j"), False),
    (access.Rules.DISCOVERY, access.Principal(access.WORKLOAD, "greeter", "j"), True),
    (access.Rules.WORKLOAD, access.Principal(tokens.READ, token_id="r"), False),
])
def test_rules_admit_their_roles_only(rule, principal, allowed):
    if allowed:
        access.check(rule, principal, "/meshapi.v1.Management/Apply")
    else:
        with pytest.raises(PermissionDenied, match=f"Apply needs .*; this call's credential is "):
            access.check(rule, principal, "/meshapi.v1.Management/Apply")
