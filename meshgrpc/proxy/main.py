"""`meshgrpc proxy`: wires the relay, the discovery client and the admin endpoints
together, and drains on SIGTERM.

With --workers N (auto: one per core, cli.py) the parent reserves the listen port (bound with SO_REUSEPORT but
never listening, so no connection queues on it), then forks N workers that each
run a whole proxy and bind the same port once their config is complete; the kernel
spreads connections between them. Worker 0 serves the admin port.

With --inbound ADDR --app ADDR (and --service: its workload certificate) the proxy
is also its service's inbound sidecar: a second listener terminating mutual TLS
from other proxies, relaying to the application (inbound.py). It registers the
listener's address (or --inbound-endpoint) as an endpoint of its service's
cluster, with its workload certificate and a lease it heartbeats like `meshgrpc
register`, so the endpoint leaves the mesh when the proxy stops (unregistered
before the drain starts) or dies (when the lease expires).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import resource
import signal
import socket
import sys
import time

import uvloop

from meshapi.v1 import discovery_pb2, management_pb2
from meshgrpc.addresses import split_address, split_targets
from meshgrpc.admin.http import AdminServer
from meshgrpc.admin.metrics import ProxyMetrics, ScrapeGauges
from meshgrpc.admin.views import AdminViews
from meshgrpc.config import resources
from meshgrpc.control_channel import CredentialError, Keepalive, credentials_from_args
from meshgrpc.errors import ConfigError
from meshgrpc.identity.issuer import IssueFailed
from meshgrpc.identity.joining import discovery_dialer
from meshgrpc.proxy.access_log import AccessLog
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.proxy.configurator import ProxyConfigurator
from meshgrpc.proxy.health import HealthChecker
from meshgrpc.proxy import load_report, load_stream
from meshgrpc.proxy.inbound import InboundAuthorization, app_state
from meshgrpc.proxy.listener import EdgeLimits, serve
from meshgrpc.proxy.load_reporter import LoadReporter
from meshgrpc.proxy.orca.oob import OobSubscriber
from meshgrpc.proxy.orca.probes import Prober
from meshgrpc.proxy.orca.streams import WireStreams
from meshgrpc.proxy.outlier import OutlierTicker
from meshgrpc.proxy.relay import Relay
from meshgrpc.proxy.state import ProxyState, StateHolder
from meshgrpc.proxy.tls import UpstreamTls
from meshgrpc.proxy.upstream import UpstreamPools
from meshgrpc.tasks import OwnedTask
from meshgrpc.xds.client import DiscoveryClient
from meshgrpc.xds.delta_client import DeltaClient

log = logging.getLogger("meshgrpc.proxy")

UNREGISTER_TIMEOUT = 5.0  # seconds a stopping proxy gives the control plane to drop its inbound endpoint


class Proxy:
    """One proxy process: listener, upstream pools, discovery client, admin."""

    def __init__(self, args, worker: int = 0, reuse_port: bool = False) -> None:
        self.args = args
        self.worker = worker
        self.reuse_port = reuse_port
        self.holder = StateHolder(ProxyState(routes=None, clusters=ClusterSet({}), versions={}))
        # One random source for every draw (weighted splits, balancers, faults,
        # mirrors, retry back-off): --seed makes a run reproducible.
        rng = random.Random(args.seed + worker if args.seed is not None else None)
        self.pools = UpstreamPools(rng=rng)
        self.metrics = ProxyMetrics(self._gauges)
        # Health verdicts and outlier timers act on whichever cluster set is current.
        self.health = HealthChecker(lambda c, a, healthy: self.holder.current.clusters.set_health(c, a, healthy))
        self.outliers = OutlierTicker(lambda: self.holder.current.clusters.tick())
        # Backend load reports (ORCA): out-of-band streams and PREQUAL's probes, on one stream seam.
        self.streams = WireStreams()
        self.load_reports = OobSubscriber(
            self.streams, lambda c, a, report: self.holder.current.clusters.record_load(c, a, report), rng=rng)
        self.prober = Prober(self.streams)
        self.configurator = ProxyConfigurator(
            self.holder, args.route_config, self.pools, local_zone=args.zone,
            on_nack=self.metrics.on_nack, on_applied=self._applied, rng=rng, prober=self.prober)
        self.configured = asyncio.Event()  # set once a complete config is applied
        self.access_log = AccessLog(args.access_log, args.access_log_sample) if args.access_log else None
        if self.access_log is not None:
            self.metrics.watch_access_log(self.access_log)
        self.inbound = Inbound(args, rng, self.metrics, self.access_log) if args.inbound else None
        self.relay = Relay(self.holder, self.pools, observer=self.metrics, rng=rng,
                           replay_memory=args.replay_memory, access_log=self.access_log,
                           trace_headers=args.trace_headers == "on")
        node_id = args.node_id if worker == 0 else f"{args.node_id}/{worker}"
        client = DeltaClient if args.discovery == "delta" else DiscoveryClient
        # A control plane that vanishes without closing the connection (host down,
        # network cut) is noticed within --discovery-keepalive + 10 s, and the client
        # reconnects; the control plane permits pings as often as its
        # --min-ping-interval (control_channel.py). Credentials: identity/joining.py.
        self.identity, dialer = discovery_dialer(args, Keepalive(interval=args.discovery_keepalive))
        self.client = client(
            args.control_plane, discovery_pb2.Node(id=node_id, zone=args.zone),
            {resources.CLUSTER: [], resources.ENDPOINTS: [], resources.ROUTES: [args.route_config],
             resources.AUTHZ: []},
            self.configurator.on_update, dialer=dialer)
        self.load_reporter = self._load_reporter(rng, dialer)
        self.draining = False
        self.listener = None

    def _load_reporter(self, rng: random.Random, dialer) -> LoadReporter:
        """Load reports to the control plane, dialled like the discovery stream."""
        routes = load_report.RouteCallDeltas(self.metrics.route_calls)
        return LoadReporter(
            self.client.targets, lambda: load_report.hello(self.client.node, self.configurator.versions),
            lambda window_s: load_report.build_report(self.holder.current.clusters, routes.take(),
                                                      self.configurator.versions, window_s, time.monotonic()),
            load_stream.connector(dialer),
            clock=time.monotonic, rng=rng)

    def _applied(self, state) -> None:
        self.health.sync(state.clusters)
        self.load_reports.sync(state.clusters)
        self.streams.sync(state.clusters.addresses())
        if self.inbound is not None and state.policies != self.inbound.policies:
            self.inbound.update_policies(state.policies)
        if self.configurator.ready:
            self.configured.set()

    def _gauges(self) -> ScrapeGauges:
        in_flight = {c.name: sum(e.in_flight for e in c.endpoints) for c in self.holder.current.clusters}
        edge = {"upstream": self.pools.counters.as_dict()}
        if self.listener is not None:
            edge["downstream"] = self.listener.counters.as_dict()
        authz = {}
        if self.inbound is not None:
            authz = self.inbound.authorization.decisions()
            edge["inbound_upstream"] = self.inbound.pools.counters.as_dict()
            if self.inbound.listener is not None:
                edge["inbound"] = self.inbound.listener.counters.as_dict()
        return ScrapeGauges(in_flight, dict(self.configurator.versions), edge, authz)

    async def serve(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if self.identity is not None:
            try:
                await self.identity.join()
            except IssueFailed as e:
                print(f"meshgrpc proxy: the control plane refused a certificate for {self.args.service}: {e}",
                      file=sys.stderr)
                return 1
            self.identity.start()
            self.pools.tls = UpstreamTls(self.identity.client_context(), self.identity.current.spiffe_id)
        self.client.start()
        self.outliers.start()
        self.prober.start()
        if self.access_log is not None:
            self.access_log.start()
        self.load_reporter.start()
        if self.reuse_port:
            # The kernel hands connections to every worker bound to the port, and /ready
            # (worker 0's) cannot speak for the others: a worker joins the port only once
            # it can route, so no client meets one that has no config yet.
            await _first_of(self.configured, stop)
        host, port = split_address(self.args.listen, listen=True)
        self.listener = listener = await serve(self.relay, host, port, reuse_port=self.reuse_port,
                                               limits=self.args.edge_limits)
        if self.inbound is not None:
            await self.inbound.start(self.identity)
        admin = await self._start_admin(listener) if self.worker == 0 else None
        _freeze_startup_heap()
        await stop.wait()
        return await self._drain(listener, admin)

    async def _start_admin(self, listener) -> AdminServer:
        views = AdminViews(self.holder, self.configurator, self.client, self.metrics,
                           draining=lambda: self.draining, in_flight=listener.in_flight,
                           authority=f"{listener.host}:{listener.port}",
                           authorization=self.inbound.authorization if self.inbound is not None else None)
        admin = AdminServer(views.routes())
        host, port = split_address(self.args.admin, listen=True)
        bound_host, bound_port = await admin.start(host, port)
        log.info("admin listening on %s:%d", bound_host, bound_port)
        return admin

    async def _drain(self, listener, admin: AdminServer | None) -> int:
        """/ready turns 503, GOAWAY to clients, calls in flight get up to --drain-timeout."""
        self.draining = True
        log.info("draining: up to %.1fs for %d call(s) in flight", self.args.drain_timeout, listener.in_flight())
        drains = [listener.drain(self.args.drain_timeout)]
        if self.inbound is not None:
            drains.append(self.inbound.drain(self.args.drain_timeout))
        drained = all(await asyncio.gather(*drains))
        await self.client.stop()
        await self.load_reporter.stop()
        if self.identity is not None:
            await self.identity.stop()
        await self.outliers.stop()
        await self.health.stop()
        await self.load_reports.stop()
        await self.prober.stop()
        await self.streams.close()
        await self.pools.close()
        if self.access_log is not None:
            await asyncio.to_thread(self.access_log.stop)   # its last lines, bounded by its own timeout
        if admin is not None:
            await admin.close()
        log.info("stopped (%s)", "drained" if drained else "drain timed out")
        return 0


class Inbound:
    """The inbound sidecar: its relay (fixed to the app, judging each call), its
    own upstream pool to the app, and its mutual-TLS listener."""

    def __init__(self, args, rng: random.Random, observer, access_log) -> None:
        self.args = args
        self.pools = UpstreamPools(rng=rng)
        self.authorization = InboundAuthorization(args.service)
        self.policies: tuple = ()  # the specs `authorization` was compiled from
        self.registration: OwnedTask | None = None  # holds the inbound endpoint in the service's cluster
        self._unregister = asyncio.Event()
        self.relay = Relay(StateHolder(app_state(args.app, rng)), self.pools, observer=observer, rng=rng,
                           replay_memory=args.replay_memory, access_log=access_log,
                           trace_headers=args.trace_headers == "on", authorization=self.authorization)
        self.listener = None

    def update_policies(self, policies: tuple) -> None:
        self.authorization.update(policies)
        self.policies = policies

    async def start(self, identity) -> None:
        host, port = split_address(self.args.inbound, listen=True)
        self.listener = await serve(self.relay, host, port, limits=self.args.edge_limits,
                                    ssl=identity.server_context(), name="inbound")
        endpoint = self.args.inbound_endpoint or f"{self.listener.host}:{self.listener.port}"
        instance = management_pb2.Instance(cluster=self.args.service, address=endpoint, zone=self.args.zone)
        targets = split_targets(self.args.control_plane)
        # (grpcio's registration client: imported here, so a proxy without --inbound never loads grpcio)
        from meshgrpc.controlplane.commands import hold_registration
        self.registration = OwnedTask(f"registration {endpoint}", lambda: hold_registration(
            targets, identity, instance, random.Random(), self._unregister))
        self.registration.start()

    async def drain(self, timeout: float) -> bool:
        await self._stop_registration()
        drained = await self.listener.drain(timeout) if self.listener is not None else True
        await self.pools.close()
        return drained

    async def _stop_registration(self) -> None:
        """Unregister first, so callers stop picking this endpoint while its calls finish."""
        if self.registration is None:
            return
        self._unregister.set()
        task = self.registration.start()  # the running task (start() returns it)
        try:
            await asyncio.wait_for(asyncio.shield(task), UNREGISTER_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("unregistering the inbound endpoint took over %.0fs; its lease will expire",
                        UNREGISTER_TIMEOUT)
        await self.registration.stop()


async def _first_of(*events: asyncio.Event) -> None:
    """Returns as soon as any of `events` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _freeze_startup_heap() -> None:
    """What is alive once the proxy serves (modules, generated message classes, the
    codec's tables, the first config) lives as long as the process: gc.freeze() puts
    it out of the cyclic collector's reach, so a full collection walks only what
    calls and later configs allocate (under a flood, a 13 ms full-collection pause
    that every call in flight waits out becomes a fraction of a millisecond)."""
    gc.collect()
    gc.freeze()


def run(args) -> int:
    for flag, value in (("--listen", args.listen), ("--admin", args.admin), ("--inbound", args.inbound or "")):
        try:
            if value or flag != "--inbound":
                split_address(value, listen=True)
        except ValueError as e:
            print(f"meshgrpc proxy: {flag}: {e}", file=sys.stderr)
            return 2
    if problem := _inbound_problem(args):
        print(f"meshgrpc proxy: {problem}", file=sys.stderr)
        return 2
    try:
        args.edge_limits = EdgeLimits.parse(args.limit)
    except ValueError as e:
        print(f"meshgrpc proxy: --limit: {e}", file=sys.stderr)
        return 2
    _raise_fd_limit(args.edge_limits.max_connections)
    try:
        split_targets(args.control_plane)
    except ValueError as e:
        print(f"meshgrpc proxy: --control-plane: {e}", file=sys.stderr)
        return 2
    try:
        credentials_from_args(args)   # the CA bundle and token files are readable
    except CredentialError as e:
        print(f"meshgrpc proxy: {e}", file=sys.stderr)
        return 2
    if args.workers == 1:
        return uvloop.run(Proxy(args).serve())
    return _run_workers(args)


def _inbound_problem(args) -> str | None:
    """Why --inbound/--app cannot be served as given, or None."""
    if not args.inbound and not args.app:
        return None
    if not (args.inbound and args.app):
        return "--inbound and --app go together (the inbound listener relays to the app)"
    if not args.service or args.insecure:
        return "--inbound needs --service and its join token: other proxies verify its workload certificate"
    if args.workers > 1:
        return "--inbound with --workers > 1 is not supported yet"
    host = split_address(args.inbound, listen=True)[0]
    if host in ("0.0.0.0", "::", "") and not args.inbound_endpoint:
        return (f"--inbound {args.inbound} binds every address; say which one other proxies reach it at "
                "with --inbound-endpoint HOST:PORT (registered as the endpoint)")
    if args.inbound_endpoint:
        try:
            split_address(args.inbound_endpoint)
        except ValueError as e:
            return f"--inbound-endpoint: {e}"
    try:
        app_state(args.app)
    except ConfigError as e:
        return f"--app: {e.errors[0].message}"
    return None


def _raise_fd_limit(connections: int) -> None:
    """Open files up to the hard limit: the listener's max_connections (plus the
    upstream side) should be what refuses clients, not EMFILE on accept."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < connections + 256:
        log.warning("open-file limit %d is below --limit max_connections=%d (+256): clients may meet EMFILE",
                    hard, connections)


def _run_workers(args) -> int:
    host, port = split_address(args.listen, listen=True)
    reserve = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserve.bind((host, port))
    args.listen = f"{host}:{reserve.getsockname()[1]}"
    children = [_fork_worker(args, i) for i in range(args.workers)]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: [_kill(pid, signum) for pid in children])
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    reserve.close()
    return max(codes, key=abs)


def _fork_worker(args, worker: int) -> int:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = uvloop.run(Proxy(args, worker=worker, reuse_port=True).serve())
        logging.shutdown()
        os._exit(code)
    return pid


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
