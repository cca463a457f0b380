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

The gRPC server permits the keepalive pings its clients send (control_channel.py):
pings --min-ping-interval apart (default 10 s; proxies ping every 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from meshgrpc.addresses import split_address
from meshgrpc.admin.http import AdminServer
from meshgrpc.control_channel import server_options
from meshgrpc.controlplane.controller import Controller
from meshgrpc.controlplane.etcd_client import EtcdClient
from meshgrpc.controlplane.etcd_store import EtcdStore, parse_store_url
from meshgrpc.controlplane.filewatch import FileWatcher, parse_config, read_config
from meshgrpc.controlplane.guard import removal_limit
from meshgrpc.controlplane.load_book import LoadBook
from meshgrpc.controlplane.load_service import LoadReportingServicer
from meshgrpc.controlplane.management import ManagementServicer
from meshgrpc.controlplane.metrics import ControlPlaneMetrics
from meshgrpc.controlplane.publisher import Publisher
from meshgrpc.controlplane.registry import Registry
from meshgrpc.controlplane.store import SqliteStore, Store
from meshgrpc.dashboard.server import DashboardPages
from meshgrpc.errors import MeshError
from meshgrpc.proxyless.server import AdsServer, load_translator
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds import server as discovery_server
from meshgrpc.xds.server import DiscoveryServer

log = logging.getLogger("meshgrpc.controlplane")

GRACE_SECONDS = 2.0


def run(args: argparse.Namespace) -> int:
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


async def serve(args: argparse.Namespace) -> int:
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

    def __init__(self, args, controller: Controller, publisher: Publisher, cache: SnapshotCache) -> None:
        self.book = LoadBook(args.load_report_interval)
        translator = load_translator(getattr(args, "proxyless_translator", ""))
        self.servers: list[DiscoveryServer] = []
        self.metrics = ControlPlaneMetrics(self.servers, lambda: len(self.book),
                                           lambda: controller.state.registration_count(), clock=time.monotonic)
        self.servers += [DiscoveryServer(cache, observer=self.metrics),
                         AdsServer(cache, translator=translator, observer=self.metrics)]
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
    seen = _Visibility(args, controller, publisher, cache)
    server, health_servicer = _build_server(controller, publisher, registry, cache, args.min_ping_interval, seen)
    port = _bind(server, args.listen)
    if port is None or not await seen.start_http(args.http):
        return 1
    await server.start()
    log.info("control-plane listening on %s:%d", args.listen.rsplit(":", 1)[0], port)
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


def _build_server(controller, publisher, registry, cache, min_ping_interval: float, seen: _Visibility):
    server = grpc.aio.server(options=[*server_options(min_ping_interval), *discovery_server.SERVER_OPTIONS])
    # Sidecars' discovery, and proxyless gRPC clients' Envoy xDS v3, on the same port.
    for discovery in seen.servers:
        discovery.add_to(server)
    ManagementServicer(controller, publisher, registry, cache, tuple(seen.servers)).add_to(server)
    LoadReportingServicer(seen.book).add_to(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, health_servicer


def _bind(server: grpc.aio.Server, listen: str) -> int | None:
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as e:
        port = 0
        log.debug("bind failed: %s", e)
    if port == 0:
        print(f"meshgrpc control-plane: cannot listen on {listen}", file=sys.stderr)
        return None
    return port


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
