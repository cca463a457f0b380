"""Upstream HTTP/2 connections: one pool per endpoint address, and the manager
that keeps the set of pools in line with the endpoints config names.

An EndpointPool multiplexes calls' attempts on few connections. A connection takes
streams up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS; another connection is
opened when all are full (the codec's TooManyStreams counts as full), up to the
cluster's circuit_breaker.max_connections_per_endpoint; beyond that, attempts wait
for a stream slot, counted against max_pending_requests. A connection that
receives GOAWAY drains: no new streams, those above last_stream_id are refused to
their calls (never processed: retried elsewhere), it closes when its last stream
ends. A connect is bounded by the cluster's connect_timeout; a failed one backs
the endpoint off (exponential, jittered, capped) so a dead endpoint costs one
connect per backoff period rather than one per call; attempts arriving meanwhile,
and attempts waiting for a connection that fails, are refused to their calls,
which retry them on another endpoint when they can.

A pool for an endpoint of a MUTUAL_TLS cluster (`tls`) opens its connections with
the proxy's workload certificate and keeps one only if the peer presents the
SPIFFE ID the cluster expects (tls.py); any other peer is closed at once and counts
as a failed connect, naming both identities. Pools are keyed by address and
expected identity, so one address reached as two identities never shares a
connection.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
import time

from meshgrpc.addresses import split_address
from meshgrpc.backoff import Backoff
from meshgrpc.codec import CannotOpenStream, Counters, Limits
from meshgrpc.codec.errors import NO_ERROR
from meshgrpc.proxy.h2side import Flusher, H2Side
from meshgrpc.proxy.tls import UpstreamTls, peer_of


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamLimits:
    """The relay's HTTP/2 connections to endpoints. Each stream's window is also
    the most the proxy buffers of one response a client reads slowly."""

    http2: Limits = Limits(stream_window=256 << 10)
    stall_timeout: float = 30.0  # seconds an endpoint may leave our writes unread


UPSTREAM_LIMITS = UpstreamLimits()

log = logging.getLogger(__name__)


class UpstreamConnection(H2Side):
    """Client side of one HTTP/2 connection to an endpoint.

    No head-of-line blocking across the clients sharing it: response bytes a
    client has not read yet are acknowledged on the connection's window as soon as
    they are buffered (its stream window still holds that one stream back), up to
    `eager_budget` bytes for the whole connection; past it the connection is
    `congested` and takes no new streams, so new calls go to another connection
    while one slow reader holds this one's window."""

    def __init__(self, pool: EndpointPool) -> None:
        super().__init__(pool.flusher, client=True, limits=pool.limits.http2, counters=pool.counters,
                         stall_timeout=pool.limits.stall_timeout)
        self.pool = pool
        self.active = 0  # streams we opened and have not released
        self.draining = False  # GOAWAY received (or pool closing): no new streams
        self.full = False  # the codec refused a stream: full until one is released
        self.settled = False  # the peer's first SETTINGS arrived
        self.buffered = 0  # response bytes acknowledged on the connection window and not yet relayed
        self.eager_budget = pool.limits.http2.connection_window // 4
        self.congested = False

    def __repr__(self) -> str:
        return (f"<UpstreamConnection {self.pool.address} active={self.active} "
                f"draining={self.draining} closed={self.closed}>")

    def capacity(self) -> int:
        # Until the peer's SETTINGS arrive its stream limit is unknown (RFC 9113
        # §6.5.2 says "unlimited"; a server allowing one stream would reset the
        # rest): one stream, the others wait the round trip.
        if not self.settled:
            return 1
        return min(self.h2.peer_max_concurrent_streams, self.pool.max_streams_per_conn)

    def usable(self) -> bool:
        return not (self.draining or self.closed or self.full or self.congested) and self.active < self.capacity()

    def buffer_eagerly(self, n: int) -> int:
        """How many of `n` buffered response bytes to acknowledge on the connection
        window now (the rest wait until relayed); counts them as buffered."""
        room = max(0, self.eager_budget - self.buffered)
        take = min(n, room)
        self.buffered += take
        if take < n and not self.congested:
            self.congested = True
            log.info("%r: clients hold %d unread bytes of its window; new calls go elsewhere", self, self.buffered)
        return take

    def relayed(self, n: int) -> None:
        """`n` eagerly acknowledged bytes were relayed (or dropped)."""
        self.buffered -= n
        if self.congested and self.buffered <= self.eager_budget // 2:
            self.congested = False
            self.pool.serve_waiters()

    # -- codec callbacks (self.calls maps stream ids to Attempts) ------------------------
    def on_request(self, stream_id: int, headers, end_stream: bool) -> None:  # client role: never called
        pass

    def on_response(self, stream_id: int, headers, end_stream: bool) -> None:
        attempt = self.calls.get(stream_id)
        if attempt is not None:
            attempt.on_response(headers, end_stream)

    def on_data(self, stream_id: int, data, flow_len: int, end_stream: bool) -> None:
        attempt = self.calls.get(stream_id)
        if attempt is None:
            self.data_for_dropped_stream(stream_id, flow_len)
        else:
            attempt.on_data(data, flow_len, end_stream)

    def on_trailers(self, stream_id: int, headers) -> None:
        attempt = self.calls.get(stream_id)
        if attempt is not None:
            attempt.on_trailers(headers)

    def on_reset(self, stream_id: int, code: int) -> None:
        attempt = self.calls.get(stream_id)
        if attempt is not None:
            attempt.on_reset(code)

    def on_goaway(self, code: int, last_stream_id: int, debug: bytes) -> None:
        # RFC 9113 §6.8: streams above last_stream_id were never processed and
        # may be retried; those at or below it finish on this connection.
        self.draining = True
        log.info("%r: GOAWAY %d last_stream_id=%d", self, code, last_stream_id)
        for sid, attempt in sorted(self.calls.items()):
            if sid > last_stream_id:
                attempt.on_refused(f"upstream {self.pool.address} went away before answering")
        self.pool.connection_draining(self)

    def on_settings(self) -> None:
        self.settled = True
        self.resume_blocked()
        self.pool.serve_waiters()

    def connection_lost(self, exc) -> None:
        self.forget()
        why = f"upstream connection to {self.pool.address} lost"
        attempts, self.calls = list(self.calls.values()), {}
        for attempt in attempts:
            attempt.on_lost(why)
        self.pool.connection_lost(self)
        self.flusher.flush()

    def close_if_idle(self) -> None:
        if not self.calls and self.transport is not None and not self.closed:
            self.h2.goaway(NO_ERROR)
            self.hang_up()


class EndpointPool:
    """HTTP/2 connections to one endpoint, shared by all calls to it."""

    def __init__(self, address: str, host: str, port: int, *, flusher: Flusher,
                 limits: UpstreamLimits = UPSTREAM_LIMITS, counters: Counters | None = None,
                 clock=time.monotonic, rng: random.Random | None = None, max_waiters: int = 4096,
                 max_streams_per_conn: int = 1000, tls: UpstreamTls | None = None, peer_identity: str = "") -> None:
        self.address, self.host, self.port = address, host, port
        self.tls, self.peer_identity = tls, peer_identity  # mutual TLS, expecting this SPIFFE ID
        self.flusher, self.limits, self.clock = flusher, limits, clock
        self.counters = counters
        self.max_waiters = max_waiters  # a bound whatever the clusters' breakers say
        self.max_streams_per_conn = max_streams_per_conn
        self.backoff = Backoff(rng or random.Random(), jitter=0.2)
        self.retry_at = 0.0
        self.conns: list[UpstreamConnection] = []
        self.connecting = 0
        self.waiters: collections.deque = collections.deque()
        self.tasks: set[asyncio.Task] = set()
        self.closing = False
        self.connects = 0  # connection attempts made (observability, tests)

    def __repr__(self) -> str:
        tls = f" mtls={self.peer_identity}" if self.tls is not None else ""
        return (f"<EndpointPool {self.address}{tls} conns={len(self.conns)} connecting={self.connecting} "
                f"waiters={len(self.waiters)} closing={self.closing}>")

    def attach(self, attempt) -> None:
        """Open `attempt`'s stream on a connection now, or queue it until one is ready."""
        for conn in self.conns:
            if conn.usable():
                try:
                    attempt.open_on(conn)
                except CannotOpenStream:
                    conn.full = True
                    continue
                conn.active += 1
                return
        if self.closing:
            attempt.on_refused(f"endpoint {self.address} was removed")
            return
        if not self.connecting and self.clock() < self.retry_at:
            attempt.on_refused(f"endpoint {self.address} unreachable (reconnect backing off)", self.retry_at)
            return
        cluster = attempt.cluster
        refused = cluster.load.admit_pending(cluster.spec.circuit_breaker)
        if refused is None and len(self.waiters) >= self.max_waiters:
            refused = f"too many calls waiting for a connection to {self.address}"
        if refused is not None:
            attempt.call.relay.emit("overflow", cluster.name, "max_pending_requests")
            attempt.on_breaker(refused)
            return
        self.waiters.append(attempt)
        attempt.waiting = True
        cluster.load.pending += 1
        if not self.connecting and len(self.conns) < cluster.spec.circuit_breaker.max_connections_per_endpoint:
            self._connect(cluster.spec.connect_timeout)

    def forget(self, attempt) -> None:
        """`attempt` no longer waits (it ended while queued)."""
        try:
            self.waiters.remove(attempt)
        except ValueError:
            return
        _left_queue(attempt)

    def release(self, conn: UpstreamConnection) -> None:
        conn.active -= 1
        conn.full = False
        if conn.draining:
            conn.close_if_idle()
        elif self.waiters:
            self.serve_waiters()

    def serve_waiters(self) -> None:
        waiters = self.waiters
        while waiters and any(c.usable() for c in self.conns):
            attempt = waiters.popleft()
            _left_queue(attempt)
            self.attach(attempt)
        if waiters and not self.connecting and not self.closing:
            spec = waiters[0].cluster.spec
            if len(self.conns) < spec.circuit_breaker.max_connections_per_endpoint:
                self._connect(spec.connect_timeout)  # every connection is full: add one

    def connection_draining(self, conn: UpstreamConnection) -> None:
        conn.close_if_idle()
        self.serve_waiters()

    def connection_lost(self, conn: UpstreamConnection) -> None:
        if conn in self.conns:
            self.conns.remove(conn)

    def _connect(self, timeout: float) -> None:
        self.connecting += 1
        self.connects += 1
        task = asyncio.get_running_loop().create_task(self._open(timeout))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _open(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        secure = {} if self.tls is None else {
            "ssl": self.tls.context, "server_hostname": "", "ssl_handshake_timeout": timeout}
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port, **secure), timeout)
        except asyncio.TimeoutError:
            self.connecting -= 1
            self._connect_failed(f"no connection within the connect_timeout of {timeout:g}s")
            return
        except OSError as e:
            self.connecting -= 1
            self._connect_failed(str(e) or type(e).__name__)
            return
        self.connecting -= 1
        if self.tls is not None and not self._peer_verified(conn):
            return
        self.backoff.succeeded()
        if self.closing:
            conn.close_if_idle()
            return
        self.conns.append(conn)
        self.serve_waiters()
        self.flusher.flush()

    def _peer_verified(self, conn: UpstreamConnection) -> bool:
        """The mutual-TLS peer is who the cluster expects (else the connect failed)."""
        peer = peer_of(conn.transport)
        problem = self.tls.problem(peer, self.peer_identity)
        if problem is not None:
            conn.transport.abort()
            self._connect_failed(problem)
            return False
        log.info("mutual TLS connection to %s: %s", self.address, peer.describe())
        return True

    def _connect_failed(self, why: str) -> None:
        delay = self.backoff.failed()
        self.retry_at = self.clock() + delay
        log.warning("connect to %s failed (%s); retrying no sooner than %.2fs", self.address, why, delay)
        waiters, self.waiters = self.waiters, collections.deque()
        msg = f"cannot connect to endpoint {self.address}: {why}"
        for attempt in waiters:
            _left_queue(attempt)
            attempt.on_refused(msg, self.retry_at)
        self.flusher.flush()

    def close(self, now: bool = False) -> None:
        """Stop taking calls; connections close once idle (or at once if `now`)."""
        self.closing = True
        waiters, self.waiters = self.waiters, collections.deque()
        for attempt in waiters:
            _left_queue(attempt)
            attempt.on_refused(f"endpoint {self.address} was removed")
        for conn in list(self.conns):
            conn.draining = True
            if now and conn.transport is not None:
                conn.transport.close()
            else:
                conn.close_if_idle()
        if now:
            for task in self.tasks:
                task.cancel()
        self.flusher.flush()

    def idle(self) -> bool:
        return not self.conns and not self.connecting


def _left_queue(attempt) -> None:
    if attempt.waiting:
        attempt.waiting = False
        attempt.cluster.load.pending -= 1



class UpstreamPools:
    """Pools keyed by "host:port". `sync(addresses)` opens pools for new endpoints
    and retires pools of removed ones (their connections close after their
    streams finish). `get()` also creates pools on demand, so a call to an endpoint
    that appeared in config before `sync` ran still goes out."""

    def __init__(self, limits: UpstreamLimits = UPSTREAM_LIMITS, clock=time.monotonic,
                 rng: random.Random | None = None, **pool_options) -> None:
        self.flusher = Flusher()
        self.limits, self.clock = limits, clock
        self.counters = Counters()  # the codec's limits, over every upstream connection
        self.rng = rng or random.Random()
        self.pool_options = pool_options
        self.pools: dict[str, EndpointPool] = {}
        self.secure_pools: dict[tuple[str, str], EndpointPool] = {}  # (address, peer SPIFFE ID)
        self.retiring: list[EndpointPool] = []
        self.tls: UpstreamTls | None = None  # set once the proxy holds a workload certificate

    def __repr__(self) -> str:
        return f"<UpstreamPools {sorted(self.pools)} retiring={len(self.retiring)}>"

    def get(self, address: str, host: str | None = None, port: int | None = None) -> EndpointPool:
        pool = self.pools.get(address)
        if pool is None:
            if host is None or port is None:
                host, port = split_address(address)
            pool = EndpointPool(address, host, port, flusher=self.flusher, limits=self.limits,
                                counters=self.counters, clock=self.clock, rng=self.rng, **self.pool_options)
            self.pools[address] = pool
        return pool

    def get_secure(self, address: str, host: str, port: int, cluster_name: str, peer_identity: str):
        """The mutual-TLS pool of `address` for a cluster expecting `peer_identity`
        ("" for the cluster's default); None when the proxy has no certificate."""
        tls = self.tls
        if tls is None:
            return None
        expected = tls.expected(cluster_name, peer_identity)
        pool = self.secure_pools.get((address, expected))
        if pool is None:
            pool = EndpointPool(address, host, port, flusher=self.flusher, limits=self.limits, counters=self.counters,
                                clock=self.clock, rng=self.rng, tls=tls, peer_identity=expected, **self.pool_options)
            self.secure_pools[(address, expected)] = pool
        return pool

    def sync(self, addresses) -> None:
        """Make the pool set match `addresses` (an iterable of "host:port")."""
        wanted = set(addresses)
        for address in wanted - self.pools.keys():
            self.get(address)
        for address in self.pools.keys() - wanted:
            self._retire(self.pools.pop(address))
        for key in [k for k in self.secure_pools if k[0] not in wanted]:
            self._retire(self.secure_pools.pop(key))
        self.retiring = [p for p in self.retiring if not p.idle()]

    def _retire(self, pool: EndpointPool) -> None:
        pool.close()
        self.retiring.append(pool)

    async def close(self) -> None:
        """Shut every pool now (process exit); awaits the connect tasks' cancellation."""
        pools = list(self.pools.values()) + list(self.secure_pools.values()) + self.retiring
        self.pools, self.secure_pools, self.retiring = {}, {}, []
        tasks = [t for p in pools for t in p.tasks]
        for pool in pools:
            pool.close(now=True)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
