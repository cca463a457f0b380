"""A workload's own certificate: a key made here (it never leaves the process), a
CSR sent to the control plane, the certificate it signs, renewed at half its
lifetime with a fresh key, for as long as the workload runs.

What the data path uses (the small API of this module):
- `server_context()` / `client_context()`: ssl.SSLContexts holding the current
  chain and key, TLS 1.3 only, ALPN h2, peers verified against the mesh's CA
  (the expected peer SPIFFE ID is the caller's to check: `peer_spiffe_id`). The
  same two objects live for the whole run: a renewal loads the new chain into
  them (`SSLContext.load_cert_chain` replaces the context's certificate), so a
  listener or connector holding a context presents the new certificate on every
  handshake after the renewal, and connections already up keep theirs until they
  close; nothing needs to be rebound.
- `control_plane_context()` and `mtls_target(target)`: what a grpcwire client
  of the control plane's mTLS port dials with, made afresh for each connection
  from the current certificate (identity/joining.py: the discovery stream
  presents the renewed certificate from its next reconnect on).
- `subscribe(callback)`: told of each new certificate.

Renewal is an OwnedTask (`start`/`stop`); time and sleep are passed in, so tests
run it on a fake clock. A renewal that fails is retried with backoff (1 s
doubling to 30 s); a refusal (the join token revoked) is logged as one, since the
certificate will then expire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import shutil
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable

from meshgrpc.backoff import Backoff
from meshgrpc.control_channel import ClientCredentials
from meshgrpc.identity import spiffe
from meshgrpc.identity.ca import key_pem, make_csr, new_key
from meshgrpc.identity.issuer import Held, IssueFailed, mtls_target
from meshgrpc.identity.private_files import write_private
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

Issue = Callable[[bytes, Held | None], Awaitable]   # (csr, current) -> IssueCertificateResponse


@dataclasses.dataclass(frozen=True)
class Certificate:
    """One certificate of this workload and when it was received."""

    key_pem: bytes
    chain_pem: bytes
    ca_bundle: bytes
    spiffe_id: str
    not_after: float
    received: float
    mtls_port: int

    def renew_at(self) -> float:
        """Half-way through what is left of its life when it arrived."""
        return self.received + (self.not_after - self.received) / 2

    def held(self) -> Held:
        return Held(self.key_pem, self.chain_pem, self.ca_bundle, self.mtls_port)


class WorkloadIdentity:
    def __init__(self, service: str, issue: Issue, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: random.Random | None = None,
                 files_dir: str | None = None) -> None:
        self.service, self._issue, self._clock, self._sleep = service, issue, clock, sleep
        self._backoff = Backoff(rng or random.Random(), base=1.0, cap=30.0)
        self.current: Certificate | None = None
        self.renewals = 0          # certificates received after the first
        self.failures = 0          # renewal attempts that failed
        self.last_error = ""
        self._subscribers: list[Callable[[Certificate], None]] = []
        self._contexts: list[ssl.SSLContext] = []
        self._own_dir = files_dir is None
        self._dir = files_dir or tempfile.mkdtemp(prefix="meshgrpc-identity-")   # mode 0700
        self._task = OwnedTask(f"certificate-renewal {service}", self._renew_forever)

    async def join(self) -> Certificate:
        """The first certificate, asked for until the control plane answers.
        Raises IssueFailed when it refuses (a bad or revoked join token)."""
        while True:
            try:
                return self._install(await self._request(None))
            except IssueFailed as e:
                if e.refused:
                    raise
                self.last_error = str(e)
                await self._sleep(self._backoff.failed())

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _renew_forever(self) -> None:
        while True:
            await self._sleep(max(0.0, self.current.renew_at() - self._clock()))
            try:
                self._install(await self._request(self.current.held()))
                self.renewals += 1
                self._backoff.succeeded()
            except IssueFailed as e:
                self.failures, self.last_error = self.failures + 1, str(e)
                left = self.current.not_after - self._clock()
                log.error("certificate renewal for %s %s: %s (the certificate expires in %.0fs)", self.service,
                          "refused" if e.refused else "failed", e, left)
                await self._sleep(self._backoff.failed())

    async def _request(self, current: Held | None):
        key = new_key()
        csr = make_csr(key, spiffe.service_id("unknown", self.service))
        response = await self._issue(csr, current)
        return key_pem(key), response

    def _install(self, made) -> Certificate:
        key, response = made
        cert = Certificate(key, response.certificate_chain, response.ca_bundle, response.spiffe_id,
                           response.not_after.ToNanoseconds() / 1e9, self._clock(), response.mtls_port)
        self.current = cert
        self._write_files(cert)
        for context in self._contexts:
            self._load(context)
        for callback in list(self._subscribers):
            callback(cert)
        log.info("certificate for %s valid until %s; renewing at %s", cert.spiffe_id,
                 time.strftime("%H:%M:%S", time.localtime(cert.not_after)),
                 time.strftime("%H:%M:%S", time.localtime(cert.renew_at())))
        return cert

    # ------------------------------------------------------------ what the data path uses

    def subscribe(self, callback: Callable[[Certificate], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def server_context(self) -> ssl.SSLContext:
        return self._context(ssl.PROTOCOL_TLS_SERVER)

    def client_context(self) -> ssl.SSLContext:
        return self._context(ssl.PROTOCOL_TLS_CLIENT)

    def control_plane_context(self) -> ssl.SSLContext:
        """TLS to the control plane's mTLS port with the current certificate: the
        control plane checked against the mesh's CA and the host name dialled."""
        cert = self._require()
        return ClientCredentials(ca_bundle=cert.ca_bundle, key_pem=cert.key_pem,
                                 chain_pem=cert.chain_pem).ssl_context()

    def aio_channel(self, target: str, options=()):
        """A grpcio channel to the control plane's mTLS port with the current
        certificate: for the inbound endpoint's registration (controlplane/commands.py
        hold_registration), the one part of the proxy still on grpcio, imported only
        by a proxy run with --inbound."""
        cert = self._require()
        credentials = ClientCredentials(ca_bundle=cert.ca_bundle, key_pem=cert.key_pem, chain_pem=cert.chain_pem)
        return credentials.aio_channel(self.mtls_target(target), options)

    def mtls_target(self, target: str) -> str:
        """The control plane at `target`'s host, on the mTLS port the current certificate came with."""
        return mtls_target(target, self._require().mtls_port)

    def _context(self, protocol: int) -> ssl.SSLContext:
        cert = self._require()
        context = ssl.SSLContext(protocol)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.set_alpn_protocols(["h2"])
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = False   # peers are checked by SPIFFE ID, not host name
        context.load_verify_locations(cadata=cert.ca_bundle.decode())
        self._load(context)
        self._contexts.append(context)
        return context

    def _load(self, context: ssl.SSLContext) -> None:
        context.load_cert_chain(self._path("chain.pem"), self._path("key.pem"))

    def _write_files(self, cert: Certificate) -> None:
        # ssl loads chains only from files: private ones, rewritten whole at each renewal.
        write_private(self._path("key.pem"), cert.key_pem)
        write_private(self._path("chain.pem"), cert.chain_pem)

    def _path(self, name: str) -> str:
        return os.path.join(self._dir, name)

    def _require(self) -> Certificate:
        if self.current is None:
            raise RuntimeError("no certificate yet: await join() first")
        return self.current

    def __repr__(self) -> str:
        cert = self.current
        state = f"{cert.spiffe_id} until {cert.not_after:.0f}" if cert else "no certificate"
        return f"WorkloadIdentity({state}, renewals={self.renewals}, failures={self.failures})"


def peer_spiffe_id(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    """The SPIFFE ID of a verified peer's certificate ("" when it has none)."""
    peer = ssl_object.getpeercert() or {}
    uris = [v for k, v in peer.get("subjectAltName", ()) if k == "URI"]
    return uris[0] if len(uris) == 1 else ""
