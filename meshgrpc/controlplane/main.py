"""`meshgrpc control-plane`: wiring the store, state, publisher, registry, file
watch and gRPC services (sidecars' discovery, proxyless clients' Envoy ADS,
management, health) together, and running them until SIGTERM or SIGINT.

Start-up order keeps the rule "commit before push": the stored state is loaded,
the --config file applied (and committed) if it changed since it was last
applied, the first snapshot built, and only then the port opened.
A --config file that does not validate at start-up is refused (exit 1), even
when the store holds an older config: starting on something other than what the
operator just pointed at would hide the mistake. So is one the file watch would
refuse (empty, or removing more than --max-removal-share of the stored mesh).

The gRPC server is meshgrpc's own (grpcwire/server.py, on the codec the proxy
relays with: an idle subscribed stream costs about 3 KiB there, its handler's
task included, and 23 KiB as a grpc.aio call; bench/stream_floor.py). It
permits the keepalive pings its clients send (control_channel.py): pings
--min-ping-interval apart (default 10 s; proxies ping every 20 s).

Secure by default (trust.py, access.py): TLS on --listen with bearer tokens, TLS
with workload certificates on --listen-mtls, every call authenticated and checked;
the data dir is private (0700, files 0600: the process's umask is 077) and one
that is not is refused at start. --insecure serves plaintext without any check,
and says so loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

from grpc_health.v1 import health, health_pb2_grpc

from meshgrpc.addresses import split_address
from meshgrpc.admin.http import AdminServer
from meshgrpc.control_channel import MAX_MESSAGE_BYTES, SERVER_MAX_STRIKES
from meshgrpc.controlplane import access
from meshgrpc.controlplane.controller import Controller
from meshgrpc.controlplane.etcd_client import EtcdClient
from meshgrpc.controlplane.etcd_store import EtcdStore, parse_store_url
from meshgrpc.controlplane.filewatch import FileWatcher, parse_config, read_config
from meshgrpc.controlplane.guard import removal_limit
from meshgrpc.controlplane.identity_service import IdentityService
from meshgrpc.controlplane.load_book import LoadBook
from meshgrpc.controlplane.load_service import LoadReportingServicer
from meshgrpc.controlplane.management import ManagementServicer
from meshgrpc.controlplane.metrics import ControlPlaneMetrics
from meshgrpc.controlplane.publisher import Publisher
from meshgrpc.controlplane.registry import Registry
from meshgrpc.controlplane.store import SqliteStore, Store
from meshgrpc.controlplane.trust import Trust, TrustSettings
from meshgrpc.dashboard.server import DashboardPages
from meshgrpc.errors import MeshError
from meshgrpc.grpcwire.server import Server, ServerOptions
from meshgrpc.identity import spiffe
from meshgrpc.identity.private_files import ensure_private_dir
from meshgrpc.xds.claims import NodeClaims
from meshgrpc.proxyless.server import AdsServer, load_translator
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.server import DiscoveryServer

log = logging.getLogger("meshgrpc.controlplane")

GRACE_SECONDS = 2.0
MTLS_PORT = 15012   # Istio's port for xDS over mTLS


def run(args: argparse.Namespace) -> int:
    os.umask(0o077)   # the store, its journal and every secret: this user's only
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(args))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(args))


def open_store(args: argparse.Namespace) -> Store:
    """The store --store names: SQLite in --data-dir (the default) or etcd. Raises ValueError."""
    if args.store == "sqlite":
        return SqliteStore(args.data_dir)
    return EtcdStore(EtcdClient(parse_store_url(args.store)), args.etcd_prefix)


def open_trust(args: argparse.Namespace) -> Trust | None:
    """The CA and tokens (None with --insecure). Raises MeshError, ValueError or OSError."""
    ensure_private_dir(args.data_dir)
    if args.insecure:
        log.warning("INSECURE: --insecure serves plaintext and checks no credential: anyone who can reach %s "
                    "can change the mesh, register endpoints and read every proxy's config", args.listen)
        return None
    if problem := spiffe.trust_domain_problem(args.trust_domain):
        raise ValueError(f"--trust-domain: {problem}")
    return Trust.open(TrustSettings(args.data_dir, args.trust_domain, args.cert_lifetime, args.ca_cert,
                                    args.ca_key, tuple(args.tls_san)))


async def serve(args: argparse.Namespace) -> int:
    try:
        trust = open_trust(args)
    except (MeshError, ValueError, OSError) as e:
        print(f"meshgrpc control-plane: {e}", file=sys.stderr)
        return 1
    args.trust = trust
    try:
        store = open_store(args)
    except ValueError as e:
        print(f"meshgrpc control-plane: --store {e}", file=sys.stderr)
        return 2
    try:
        return await _serve(args, store)
    except MeshError as e:   # the store cannot be read at start-up
        print(f"meshgrpc control-plane: {e}", file=sys.stderr)
        return 1
    finally:
        await store.close()


async def _serve(args: argparse.Namespace, store: Store) -> int:
    stored = await store.load()
    controller = Controller(store, store.initial_state(stored))
    store.follow(controller.adopt)
    seen_digest = stored.config_digest
    guard = removal_limit(args.max_removal_share)
    if args.config:
        try:
            seen_digest = await apply_file_at_start(controller, args.config, stored.config_digest, guard)
        except MeshError as e:
            print(f"meshgrpc control-plane: refusing to start: {e}", file=sys.stderr)
            return 1
    cache = SnapshotCache()
    record = store.record_versions if isinstance(store, SqliteStore) else (lambda versions: None)
    publisher = Publisher(lambda: controller.state, record, cache, stored.versions, args.debounce)
    publisher.publish()  # the committed state is served from the first connection on
    controller.on_change, controller.on_configured = publisher.notify, publisher.flush
    registry = Registry(controller, store, args.lease_ttl)
    if not store.holds_leases:
        registry.restore((c, a) for c, by_address in controller.state.registrations.items() for a in by_address)
    watcher = FileWatcher(args.config, _file_applier(controller), seen_digest, guard,
                          settle=args.config_settle) if args.config else None
    return await _run_server(args, controller, publisher, registry, cache, watcher)


class _Visibility:
    """What the control plane shows of itself: load reports, metrics, the dashboard."""

    def __init__(self, args, controller: Controller, publisher: Publisher, cache: SnapshotCache,
                 server: Server) -> None:
        self.book = LoadBook(args.load_report_interval)
        self.servers: list[DiscoveryServer] = []  # both discovery servers, once built (_add_services)
        self.metrics = ControlPlaneMetrics(self.servers, lambda: len(self.book),
                                           lambda: controller.state.registration_count(), clock=time.monotonic,
                                           http2_limits=server.counters.as_dict)
        controller.on_commit, publisher.on_published = self.metrics.on_commit, self.metrics.on_published
        self.pages = DashboardPages(cache, self.book, self.servers,
                                    lambda: {t: tv.version for t, tv in publisher.versions.items()}, self.metrics)
        self.http: AdminServer | None = None

    async def start_http(self, listen: str) -> bool:
        """Serves the dashboard on `listen` ("" = not at all); False if it cannot bind."""
        if not listen:
            return True
        try:
            host, port = split_address(listen, listen=True)
            self.http = AdminServer(self.pages.routes())
            host, port = await self.http.start(host, port)
        except (ValueError, OSError) as e:
            print(f"meshgrpc control-plane: --http {listen}: {e}", file=sys.stderr)
            return False
        log.info("dashboard listening on %s:%d (http://%s:%d/)", host, port, host, port)
        return True

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()


async def _run_server(args, controller, publisher, registry, cache, watcher) -> int:
    trust = getattr(args, "trust", None)
    server = _new_server(trust, args.min_ping_interval)
    ports = await _bind_all(server, args, trust)
    seen = _Visibility(args, controller, publisher, cache, server)
    if ports is None or not await seen.start_http(args.http):
        return 1
    identity = IdentityService(trust, mtls_port=ports[1])
    health_servicer = _add_services(server, controller, publisher, registry, cache, identity,
                                    load_translator(getattr(args, "proxyless_translator", "")), seen)
    await server.start()
    log.info("control-plane listening on %s:%d", args.listen.rsplit(":", 1)[0], ports[0])
    if ports[1]:
        log.info("control-plane-mtls listening on %s:%d", _mtls_address(args).rsplit(":", 1)[0], ports[1])
    stop = _stop_on_signals()
    failed: list[BaseException] = []
    owned = [publisher, registry] + ([watcher] if watcher else [])
    for component in owned:
        component.start().add_done_callback(_on_task_end(stop, failed))
    try:
        await stop.wait()
    finally:
        log.info("control-plane stopping")
        await health_servicer.enter_graceful_shutdown()
        await registry.stop()   # first: streams ended by the shutdown must not unregister
        await server.stop(GRACE_SECONDS)
        await seen.close()
        for component in owned:
            await component.stop()
    return 1 if failed else 0


def _on_task_end(stop: asyncio.Event, failed: list[BaseException]):
    """A background task that dies is fatal: log why and stop, rather than serve on half-working."""
    def done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical("%s failed; stopping", task.get_name(), exc_info=task.exception())
            failed.append(task.exception())
            stop.set()
    return done


async def apply_file_at_start(controller: Controller, path: str, stored_digest: str, guard) -> str:
    """Applies the file as a replace unless it is the one last applied; returns its digest.
    Raises ConfigError (bad file) or FailedPrecondition (`guard` refuses it)."""
    raw, digest = read_config(path)
    if digest == stored_digest:
        log.info("%s is unchanged since it was last applied; serving the stored config", path)
        return digest
    changes = await controller.apply(parse_config(path, raw), replace=True, config_digest=digest, guard=guard)
    log.info("applied %s: %d change(s)", path, len(changes))
    return digest


def _file_applier(controller: Controller):
    async def apply(mesh, digest, guard):
        return await controller.apply(mesh, replace=True, config_digest=digest, guard=guard)
    return apply


def _new_server(trust: Trust | None, min_ping_interval: float) -> Server:
    authenticator = access.Authenticator(trust.tokens, trust.ca.trust_domain) if trust is not None else None
    options = ServerOptions(min_ping_interval=min_ping_interval, max_ping_strikes=SERVER_MAX_STRIKES,
                            max_message_bytes=MAX_MESSAGE_BYTES)
    return Server(options, interceptors=[access.AccessInterceptor(authenticator)])


def _add_services(server, controller, publisher, registry, cache, identity: IdentityService, translator,
                  seen: _Visibility):
    claims = NodeClaims()   # one identity per node id, across both discovery protocols
    discovery = DiscoveryServer(cache, caller=access.caller, claims=claims, observer=seen.metrics)
    # Proxyless gRPC clients: Envoy xDS v3 on the same port.
    ads = AdsServer(cache, translator=translator, caller=access.caller, claims=claims, observer=seen.metrics)
    seen.servers += [discovery, ads]
    for each in seen.servers:
        each.add_to(server)
    ManagementServicer(controller, publisher, registry, cache, (discovery, ads), identity).add_to(server)
    LoadReportingServicer(seen.book).add_to(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return health_servicer


def _mtls_address(args) -> str:
    """--listen-mtls, or --listen's host on port 15012 (port 0 when --listen's is 0)."""
    if args.listen_mtls:
        return args.listen_mtls
    host, port = split_address(args.listen, listen=True)
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{MTLS_PORT if port else 0}"


async def _bind_all(server: Server, args, trust: Trust | None) -> tuple[int, int] | None:
    """(token port, mTLS port; 0 with --insecure), or None when one cannot be bound."""
    if trust is None:
        port = await _bind(server, args.listen, None)
        return None if port is None else (port, 0)
    port = await _bind(server, args.listen, trust, require_client_certificate=False)
    mtls = await _bind(server, _mtls_address(args), trust, require_client_certificate=True) \
        if port is not None else None
    return None if mtls is None else (port, mtls)


async def _bind(server: Server, listen: str, trust: Trust | None,
                require_client_certificate: bool = False) -> int | None:
    """The port bound: plaintext without `trust`, else TLS from its CA (renewed as
    connections are accepted); None, having said why, when it cannot be bound."""
    try:
        if trust is None:
            return await server.bind(listen)
        return await server.bind(listen, trust.server_ssl_context(require_client_certificate), trust.renew_if_due)
    except (ValueError, OSError) as e:
        print(f"meshgrpc control-plane: cannot listen on {listen}: {e}", file=sys.stderr)
        return None


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
