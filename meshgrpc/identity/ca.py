"""The mesh's certificate authority: one root (ECDSA P-256, self-signed) that signs
short-lived workload certificates (X.509-SVIDs, spiffe/spiffe standards/X509-SVID.md)
and the control plane's own serving certificate.

The CA never sees a workload's private key: it signs the public key of a CSR the
workload made, after checking the CSR's signature (proof that the caller holds the
key) and that the key is ECDSA P-256. The identity in the certificate is the one
the caller was authenticated as, never what the CSR asks for. Leaf certificates:
one URI SAN (the SPIFFE ID), CA:false, digitalSignature only, clientAuth and
serverAuth (X509-SVID.md section 4), valid from a minute before `now` (clock
skew between hosts) for `lifetime` seconds. The subject's OU records the join
token the identity rests on, so a certificate can be refused once that token is
revoked (tokens.py).

Time is passed in (`now`, seconds since the epoch) so tests pick the moment.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import secrets

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshgrpc.errors import ConfigError, FieldError
from meshgrpc.identity import spiffe

ROOT_LIFETIME = 10 * 365 * 86400.0
CLOCK_SKEW = 60.0
TOKEN_OU_PREFIX = "token:"


@dataclasses.dataclass(frozen=True)
class Issued:
    """A signed certificate: its PEM chain (leaf, then root) and validity."""

    chain_pem: bytes
    spiffe_id: str
    not_before: float
    not_after: float


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_csr(key: ec.EllipticCurvePrivateKey, spiffe_id: str = "") -> bytes:
    """A PEM CSR for `key` (what a workload sends; the SAN is only a hint)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if spiffe_id:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class CertificateAuthority:
    """The root and what it signs. Built by `create` (a new root) or `load`."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, trust_domain: str) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
            raise ValueError("the CA key does not belong to the CA certificate")
        self.cert, self._key, self.trust_domain = cert, key, trust_domain
        self.bundle_pem = cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, trust_domain: str, now: float) -> "CertificateAuthority":
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                          x509.NameAttribute(NameOID.COMMON_NAME, "meshgrpc root CA")])
        cert = (_builder(name, name, key.public_key(), now, ROOT_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(spiffe.trust_domain_id(trust_domain))]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key, trust_domain)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem_bytes: bytes, trust_domain: str) -> "CertificateAuthority":
        """Raises ValueError when either does not parse, or they do not match."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem_bytes, password=None)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise ValueError("the CA certificate is not a CA (basicConstraints CA:false)")
        return cls(cert, key, trust_domain)

    def key_pem(self) -> bytes:
        return key_pem(self._key)

    def issue_workload(self, csr_pem: bytes, service: str, lifetime: float, now: float,
                       token_id: str = "") -> Issued:
        """Signs the CSR's key as `service`'s workload. Raises ConfigError (field `csr`)
        for a CSR that does not parse, is not self-signed, or is not ECDSA P-256."""
        public_key = _checked_csr(csr_pem)
        spiffe_id = spiffe.service_id(self.trust_domain, service)
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain)]
        if token_id:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, TOKEN_OU_PREFIX + token_id))
        builder = self._leaf(x509.Name(subject), public_key, now, lifetime)
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
        return self._sign(builder, spiffe_id)

    def issue_server(self, hosts: list[str], lifetime: float, now: float) -> tuple[bytes, Issued]:
        """A key and certificate for the control plane itself, valid for `hosts`
        (DNS names and IP addresses); the key is made here and never leaves."""
        key = new_key()
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(
            f"{spiffe.trust_domain_id(self.trust_domain)}/controlplane")]
        for host in dict.fromkeys(hosts):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain),
                             x509.NameAttribute(NameOID.COMMON_NAME, "meshgrpc control plane")])
        builder = self._leaf(subject, key.public_key(), now, lifetime)
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key_pem(key), self._sign(builder, "")

    def _leaf(self, subject: x509.Name, public_key, now: float, lifetime: float) -> x509.CertificateBuilder:
        return (_builder(subject, self.cert.subject, public_key, now, lifetime)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=False, crl_sign=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                               critical=False))

    def _sign(self, builder: x509.CertificateBuilder, spiffe_id: str) -> Issued:
        cert = builder.sign(self._key, hashes.SHA256())
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.bundle_pem
        return Issued(chain, spiffe_id, cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())


def _builder(subject: x509.Name, issuer: x509.Name, public_key, now: float, lifetime: float) -> x509.CertificateBuilder:
    start = datetime.datetime.fromtimestamp(now - CLOCK_SKEW, datetime.timezone.utc)
    end = datetime.datetime.fromtimestamp(now + lifetime, datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(secrets.randbits(127) + 1).not_valid_before(start).not_valid_after(end))


def _checked_csr(csr_pem: bytes):
    def refuse(why: str) -> ConfigError:
        return ConfigError([FieldError("csr", why)])
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise refuse(f"not a PEM certificate signing request: {e}") from None
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, ValueError):
        valid = False
    if not valid:
        raise refuse("the CSR's signature does not verify: it must be signed by the key it carries")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise refuse("the key must be ECDSA P-256")
    return key


def peer_identity(cert_pem: bytes) -> tuple[str, str]:
    """(SPIFFE ID, token id) of a leaf certificate the TLS stack already verified;
    "" for each it lacks."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    units = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    token = next((str(u)[len(TOKEN_OU_PREFIX):] for u in units if str(u).startswith(TOKEN_OU_PREFIX)), "")
    return (uris[0] if len(uris) == 1 else ""), token
