"""The CA: workload certificates (X.509-SVIDs) from CSRs, the serving certificate,
and CSRs it refuses; a real TLS handshake checks what it signs."""

from __future__ import annotations

import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshgrpc.errors import ConfigError
from meshgrpc.identity import ca as ca_module
from meshgrpc.identity.ca import CertificateAuthority, make_csr, new_key, peer_identity

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create("mesh.local", NOW)


def leaf_of(chain: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain)[0]


def test_workload_certificate_is_an_svid_for_the_callers_service(authority):
    key = new_key()
    issued = authority.issue_workload(make_csr(key, "spiffe://evil/service/admin"), "greeter", 3600, NOW, "tok1")
    cert = leaf_of(issued.chain_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://mesh.local/service/greeter"]
    assert issued.spiffe_id == "spiffe://mesh.local/service/greeter"
    assert cert.public_key() == key.public_key()
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert issued.not_before == NOW - ca_module.CLOCK_SKEW and issued.not_after == NOW + 3600
    assert peer_identity(issued.chain_pem) == ("spiffe://mesh.local/service/greeter", "tok1")


def test_lifetime_can_be_seconds(authority):
    issued = authority.issue_workload(make_csr(new_key()), "greeter", 2, NOW)
    assert issued.not_after - NOW == 2


def test_the_root_is_a_ca_for_the_trust_domain(authority):
    cert = authority.cert
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key().curve, ec.SECP256R1)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://mesh.local"]


def test_load_round_trips_and_refuses_a_mismatched_key(authority):
    loaded = CertificateAuthority.load(authority.bundle_pem, authority.key_pem(), "mesh.local")
    assert loaded.cert == authority.cert
    other = CertificateAuthority.create("mesh.local", NOW)
    with pytest.raises(ValueError, match="does not belong"):
        CertificateAuthority.load(authority.bundle_pem, other.key_pem(), "mesh.local")


@pytest.mark.parametrize("csr, why", [
    (b"not a csr", "not a PEM certificate signing request"),
    (None, "the key must be ECDSA P-256"),
])
def test_bad_csrs_are_refused_on_field_csr(authority, csr, why):
    if csr is None:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .sign(rsa_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match=why) as e:
        authority.issue_workload(csr, "greeter", 60, NOW)
    assert e.value.errors[0].path == "csr"


def test_a_csr_not_signed_by_its_key_is_refused(authority):
    good = x509.load_pem_x509_csr(make_csr(new_key()))
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01   # the signature's last byte
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ConfigError, match="signature does not verify"):
        authority.issue_workload(tampered, "greeter", 60, NOW)


def test_certificates_verify_in_a_tls_handshake(tmp_path):
    """Python's ssl (OpenSSL) accepts the chain as server and client: the
    certificates are usable for mTLS, not only well-formed."""
    import time
    now = time.time()
    authority = CertificateAuthority.create("mesh.local", now)
    server_key, server = authority.issue_server(["localhost"], 600, now)
    client_key = new_key()
    client = authority.issue_workload(make_csr(client_key), "frontend", 600, now)
    files = {}
    for name, data in (("ca", authority.bundle_pem), ("skey", server_key), ("schain", server.chain_pem),
                       ("ckey", ca_module.key_pem(client_key)), ("cchain", client.chain_pem)):
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files["schain"], files["skey"])
    server_ctx.load_verify_locations(files["ca"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_cert_chain(files["cchain"], files["ckey"])
    client_ctx.load_verify_locations(files["ca"])
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert c.version() == "TLSv1.3"
    peer = s.getpeercert()
    assert ("URI", "spiffe://mesh.local/service/frontend") in peer["subjectAltName"]
