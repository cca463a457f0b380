"""The control plane's secrets, kept in its data directory and made at first start:
the CA (`ca.pem`, the bundle clients trust, and `ca.key`; or the pair given by
--ca-cert/--ca-key), the token store (`tokens.json`, hashed) and the admin token
(`admin.token`, the file the CLI reads by default). Everything is 0600 in a 0700
directory (private_files.py), checked at start.

The control plane serves TLS (ssl.SSLContexts under meshgrpc's gRPC server,
grpcwire/server.py; ALPN h2, TLS 1.2 or 1.3) with a certificate from its own CA,
valid for the names clients dial (`hosts`), and re-issued at half its lifetime:
the server asks `renew_if_due()` at each connection it accepts, before its
handshake, and a new pair is loaded into every context, so it reaches new
connections while old ones carry on. ssl loads certificates only from files: the pair is written to a
private temporary file in the data dir, loaded, and removed at once (replicas
sharing a data dir never load each other's half-written pair).

A port either requires a client certificate or never asks for one (as grpcio's
servers do), so the control plane has two ports: `--listen` (TLS; the
credential is a bearer token) and `--listen-mtls` (TLS that requires a
certificate from the mesh's CA: workloads with their certificate). Both serve
every service, under the same rules.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable

from meshgrpc.identity import tokens
from meshgrpc.identity.ca import CertificateAuthority
from meshgrpc.identity.private_files import ensure_private_dir, read_private, write_private
from meshgrpc.identity.tokens import TokenStore

log = logging.getLogger(__name__)

CA_BUNDLE, CA_KEY, ADMIN_TOKEN = "ca.pem", "ca.key", "admin.token"
SERVER_CERT_LIFETIME = 30 * 86400.0


@dataclasses.dataclass(frozen=True)
class TrustSettings:
    data_dir: str
    trust_domain: str
    cert_lifetime: float
    ca_cert: str = ""      # PEM files of an existing CA (both or neither)
    ca_key: str = ""
    hosts: tuple[str, ...] = ()   # extra names the serving certificate is valid for


class Trust:
    """The CA, the tokens and the serving certificate of one control plane."""

    def __init__(self, settings: TrustSettings, ca: CertificateAuthority, token_store: TokenStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.ca, self.tokens, self._clock = settings, ca, token_store, clock
        self.hosts = _hosts(settings.hosts)
        self._server: tuple[bytes, bytes, float] | None = None   # key, chain, renew-at
        self._contexts: list[ssl.SSLContext] = []   # every serving context, given each new pair

    @classmethod
    def open(cls, settings: TrustSettings, clock: Callable[[], float] = time.time) -> "Trust":
        """Loads or creates everything in the data dir. Raises InsecureFiles,
        ValueError (a CA that does not load) or OSError."""
        ensure_private_dir(settings.data_dir)
        ca = _load_ca(settings, clock())
        token_store = TokenStore(os.path.join(settings.data_dir, TokenStore.FILENAME), clock)
        trust = cls(settings, ca, token_store, clock)
        trust._write_admin_token()
        return trust

    def path(self, name: str) -> str:
        return os.path.join(self.settings.data_dir, name)

    def _write_admin_token(self) -> None:
        if self.tokens.has_role(tokens.ADMIN):
            return
        record, text = self.tokens.create(tokens.ADMIN)
        write_private(self.path(ADMIN_TOKEN), (text + "\n").encode())
        log.info("wrote the admin token (id %s) to %s", record.id, self.path(ADMIN_TOKEN))

    def server_ssl_context(self, require_client_certificate: bool) -> ssl.SSLContext:
        """TLS for one port: ALPN h2; client certificates verified against the mesh's
        CA and required (the mTLS port) or never asked for (the token port)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["h2"])
        if require_client_certificate:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self.ca.bundle_pem.decode())
        self._server_pair()
        self._load_pair(context)
        self._contexts.append(context)
        return context

    def renew_if_due(self) -> None:
        """Past the serving certificate's half-life: a new pair, loaded into every
        context (the handshakes that follow present it)."""
        if self._server is not None and self._clock() < self._server[2]:
            return
        self._server_pair()
        for each in self._contexts:
            self._load_pair(each)

    def _load_pair(self, context: ssl.SSLContext) -> None:
        key, chain, _ = self._server
        fd, path = tempfile.mkstemp(prefix=".serving-", suffix=".pem", dir=self.settings.data_dir)   # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key + chain)
            context.load_cert_chain(path)
        finally:
            os.unlink(path)

    def _server_pair(self) -> tuple[bytes, bytes]:
        if self._server is None or self._clock() >= self._server[2]:
            now = self._clock()
            key, issued = self.ca.issue_server(list(self.hosts), SERVER_CERT_LIFETIME, now)
            self._server = (key, issued.chain_pem, now + SERVER_CERT_LIFETIME / 2)
        return self._server[0], self._server[1]


def _load_ca(settings: TrustSettings, now: float) -> CertificateAuthority:
    bundle_path, key_path = (os.path.join(settings.data_dir, n) for n in (CA_BUNDLE, CA_KEY))
    if bool(settings.ca_cert) != bool(settings.ca_key):
        raise ValueError("--ca-cert and --ca-key go together")
    if settings.ca_cert:
        with open(settings.ca_cert, "rb") as f:
            cert_pem = f.read()
        ca = CertificateAuthority.load(cert_pem, read_private(settings.ca_key), settings.trust_domain)
    elif os.path.exists(key_path):
        ca = CertificateAuthority.load(read_private(bundle_path), read_private(key_path), settings.trust_domain)
    else:
        ca = CertificateAuthority.create(settings.trust_domain, now)
        write_private(key_path, ca.key_pem())
        log.info("created the mesh's root CA for trust domain %s in %s", settings.trust_domain, settings.data_dir)
    if not os.path.exists(bundle_path) or read_private(bundle_path) != ca.bundle_pem:
        write_private(bundle_path, ca.bundle_pem)
    return ca


def _hosts(extra: tuple[str, ...]) -> tuple[str, ...]:
    """Names clients may dial: loopback, this host's name, and `extra`."""
    return tuple(dict.fromkeys(("localhost", "127.0.0.1", "::1", socket.gethostname(), *extra)))
