"""The gRPC connections to the control plane, both ends in one place so they cannot
drift apart: what its server permits, and what its clients ask for: the CLI's
calls and registration stream (grpcio, with `client_options()`), and the proxy's
discovery stream and certificate requests (meshgrpc.grpcwire, which takes
`Keepalive`, `MAX_MESSAGE_BYTES` and `ssl_context()` as they are;
meshgrpc/xds/client.py control_plane_dialer, identity/joining.py). The proxy
imports this module but never grpcio: grpcio is imported where a grpcio channel
is made, which only the control plane, the CLI and the tests do.

Keepalive (grpc doc/keepalive.md; grpc-core chttp2 ping_abuse_policy.cc and
ping_rate_policy.cc). A client pings after `interval` without data and drops the
connection when no ack comes within `timeout`, so a control plane that vanished
without closing the connection is noticed and redialled. Two client settings make
that hold on an idle stream: `keepalive_permit_without_calls`, and
`http2.max_pings_without_data` 0 (its default 2 stops pinging, or throttles it to
once a minute, after two pings with no data sent). A gRPC server counts a ping
that arrives sooner than its minimum interval after the previous one (grpc-core:
`grpc.http2.min_ping_interval_without_data_ms`, default 5 minutes) as a strike,
and past its max strikes (default 2) sends GOAWAY ENHANCE_YOUR_CALM
"too_many_pings"; the control plane's server (grpcwire/server.py, the codec's
Limits.min_ping_interval and max_ping_strikes) keeps the same policy. Nothing
resets the strikes on an idle discovery stream (only data the server sends
does), so the server must permit the clients' interval: by default it permits
pings twice as often as proxies send them (SERVER_MIN_INTERVAL), as timers drift
and a client told "too_many_pings" doubles its interval anyway (grpcwire's
Dialer does the same).

Credentials. The control plane serves TLS with a certificate from the mesh's CA
(controlplane/trust.py) and wants a credential on every call: a bearer token
(`authorization: Bearer ...`, sent as gRPC access-token call credentials, which
grpcio sends only over TLS) or, on its mTLS port, a workload certificate. A
client's `ClientCredentials` carry the CA bundle and one of those; by default the
CLI finds both where a local control plane writes them (`.meshgrpc/ca.pem`,
`.meshgrpc/admin.token`), MESHGRPC_TOKEN overriding the token. `--insecure`
(plaintext) talks to a control plane run with --insecure. A grpcwire client
checks what grpcio's ssl_channel_credentials checks (`ssl_context()`: the chain
against the CA bundle, the host name it dialled against the certificate's
names) and sends the token as the same `authorization` metadata, read again for
each call by a long-running client (`TokenSource`).

Message sizes. A config file may be 16 MiB (config/bounds.py); as a protobuf
message it is usually smaller, but lists of one-letter strings grow 1.5x, and `get`
adds registered endpoints, so both ends allow twice that instead of gRPC's default
4 MiB receive limit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import ssl
import tempfile
from typing import TYPE_CHECKING

from meshgrpc.config.bounds import MAX_FILE_BYTES

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 2 * MAX_FILE_BYTES
CLIENT_INTERVAL = 20.0        # seconds without data before a client pings
CLIENT_TIMEOUT = 10.0         # seconds a client waits for the ping's ack
SERVER_MIN_INTERVAL = 10.0    # seconds the server requires between pings without data
SERVER_MAX_STRIKES = 2        # pings sooner than that the server forgives (grpc-core's default)

_MESSAGE_OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES))


@dataclasses.dataclass(frozen=True)
class Keepalive:
    """A client's keepalive: ping after `interval` seconds without data, give up `timeout` later."""

    interval: float = CLIENT_INTERVAL
    timeout: float = CLIENT_TIMEOUT

    def options(self) -> tuple[tuple[str, int], ...]:
        return (("grpc.keepalive_time_ms", _ms(self.interval)), ("grpc.keepalive_timeout_ms", _ms(self.timeout)),
                ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0))


def client_options(keepalive: Keepalive | None = None) -> tuple[tuple[str, int], ...]:
    """Channel options for a client of the control plane; `keepalive` for long-lived streams."""
    return _MESSAGE_OPTIONS + (keepalive.options() if keepalive is not None else ())


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


DEFAULT_DATA_DIR = ".meshgrpc"
DEFAULT_TOKEN_FILE = os.path.join(DEFAULT_DATA_DIR, "admin.token")
DEFAULT_CA_FILE = os.path.join(DEFAULT_DATA_DIR, "ca.pem")
TOKEN_ENV = "MESHGRPC_TOKEN"


class CredentialError(Exception):
    """A client's credentials cannot be read; the message says which file and why."""


@dataclasses.dataclass(frozen=True)
class ClientCredentials:
    """What a client presents to the control plane. `insecure`: plaintext, nothing
    else. Otherwise TLS checked against `ca_bundle`, with `token` as a bearer token
    and/or `key_pem`+`chain_pem` as a client certificate."""

    insecure: bool = False
    ca_bundle: bytes = b""
    token: str = ""
    key_pem: bytes = b""
    chain_pem: bytes = b""

    def channel_credentials(self) -> grpc.ChannelCredentials:
        import grpc   # here, not at the top: see the module doc

        tls = grpc.ssl_channel_credentials(self.ca_bundle, self.key_pem or None, self.chain_pem or None)
        if not self.token:
            return tls
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(self.token))

    def channel(self, target: str, options=()) -> grpc.Channel:
        import grpc

        if self.insecure:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, self.channel_credentials(), options=options)

    def aio_channel(self, target: str, options=()) -> grpc.aio.Channel:
        import grpc

        if self.insecure:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self.channel_credentials(), options=options)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS of a grpcwire client (meshgrpc.grpcwire.Dialer's ssl_context)."""
        return ssl_context(self.ca_bundle, self.key_pem, self.chain_pem)

    def __repr__(self) -> str:   # never the token
        kind = "insecure" if self.insecure else "tls" + (" +token" if self.token else "") + \
            (" +certificate" if self.chain_pem else "")
        return f"ClientCredentials({kind})"


INSECURE = ClientCredentials(insecure=True)


def credentials_from_args(args) -> ClientCredentials:
    """The credentials --insecure, --ca-file, --token-file and MESHGRPC_TOKEN say.
    Raises CredentialError."""
    if getattr(args, "insecure", False):
        return INSECURE
    return ClientCredentials(ca_bundle=read_ca_bundle(getattr(args, "ca_file", None)),
                             token=read_token(getattr(args, "token_file", None)))


def read_ca_bundle(ca_file: str | None) -> bytes:
    """The CA bundle in `ca_file` (default .meshgrpc/ca.pem). Raises CredentialError."""
    ca_file = ca_file or DEFAULT_CA_FILE
    try:
        with open(ca_file, "rb") as f:
            return f.read()
    except OSError as e:
        raise CredentialError(f"cannot read the control plane's CA bundle {ca_file}: {e.strerror} (a control "
                              f"plane writes it into its data dir; pass --ca-file, or --insecure for a control "
                              f"plane run with --insecure)") from None


def read_token(token_file: str | None) -> str:
    """MESHGRPC_TOKEN, else the token in `token_file`, else the default admin token
    file when this user can read it, else "" (the control plane then says
    UNAUTHENTICATED). Raises CredentialError for a named file that cannot be read."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    path = token_file or DEFAULT_TOKEN_FILE
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        if token_file:
            raise CredentialError(f"cannot read --token-file {token_file}: {e.strerror}") from None
        return ""


class TokenSource:
    """The bearer token of a long-running client, read again (read_token) for each
    call, so a token file rewritten with a new token is used from the next call
    on. When it cannot be read then, the last token read is sent and the failure
    logged. Raises CredentialError at construction, as read_token does."""

    def __init__(self, token_file: str | None) -> None:
        self.token_file = token_file
        self._last = read_token(token_file)

    def __call__(self) -> str:
        try:
            self._last = read_token(self.token_file)
        except CredentialError as e:
            log.warning("%s; sending the token read before", e)
        return self._last

    def metadata(self) -> list[tuple[str, str]]:
        """The call's `authorization` metadata (none without a token: the control
        plane then answers UNAUTHENTICATED "no credential")."""
        token = self()
        return [("authorization", f"Bearer {token}")] if token else []

    def __repr__(self) -> str:   # never the token
        return f"TokenSource({self.token_file or TOKEN_ENV + ' or ' + DEFAULT_TOKEN_FILE})"


def ssl_context(ca_bundle: bytes, key_pem: bytes = b"", chain_pem: bytes = b"") -> ssl.SSLContext:
    """TLS to the control plane for a grpcwire client: its certificate checked
    against `ca_bundle` and the host name dialled (as grpcio checks them), with
    `chain_pem`/`key_pem` as the client certificate when given (the mTLS port)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # CERT_REQUIRED and check_hostname
    context.load_verify_locations(cadata=ca_bundle.decode())
    if chain_pem:
        _load_chain(context, key_pem, chain_pem)
    return context


def _load_chain(context: ssl.SSLContext, key_pem: bytes, chain_pem: bytes) -> None:
    # ssl loads a chain only from files: private ones (a 0700 directory), gone once loaded.
    folder = tempfile.mkdtemp(prefix="meshgrpc-tls-")
    try:
        paths = []
        for name, data in (("chain.pem", chain_pem), ("key.pem", key_pem)):
            paths.append(os.path.join(folder, name))
            with open(os.open(paths[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(data)
        context.load_cert_chain(*paths)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
