"""Accepting downstream HTTP/2 (h2c, prior knowledge) connections: their limits,
lifecycle and the drain on shutdown.

`serve(relay, host, port)` binds and returns a started Listener. `drain(timeout)`
stops accepting, sends GOAWAY (last_stream_id = the highest stream seen, so streams
in flight finish and any that raced the GOAWAY are refused with REFUSED_STREAM,
which gRPC clients retry transparently), waits up to `timeout` for the streams in
flight, then closes what is left.

The edge's limits per connection (EdgeLimits; the HTTP/2 ones are the codec's,
meshgrpc/codec/limits.py): a client must send its preface and SETTINGS within
`preface_timeout`; a connection without streams for `idle_timeout` is closed; at
most `max_connections` are open at once (one more gets GOAWAY and is closed, before
the fd limit makes the listener fail everyone); a client whose responses pile up
unread beyond `buffer_budget` gets no new streams (REFUSED_STREAM) until it reads,
and a stalled one is closed (h2side.py); with `max_connection_age` a connection is
asked to go (GOAWAY, as in a drain) once it is that old, so clients spread over
new connections and, on the inbound listener, reconnect with their renewed
certificates (Envoy's max_connection_duration).

A flooding client ends its connection in a few milliseconds and reconnects at
once: each new connection costs the event loop that everyone shares another
round of the flood before a limit trips. So for `flood_memory` seconds after the
listener ended a connection for breaking the protocol or a flood limit, a new
connection is read only after `flood_read_delay`: clients already connected are
not touched, a new honest one waits a few milliseconds once, and a flooder that
reconnects gets a bounded share of the proxy.

The inbound listener (`--inbound`) is the same Listener with a TLS context
(tls.py): the handshake, bounded by `preface_timeout`, happens before a
connection exists here, so a plaintext client or one without a mesh certificate
never gets one. The peer is read once per connection (`peer`: SPIFFE ID, TLS
version, ALPN), logged, and judged by the relay's authorization on each call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket

from meshgrpc.codec import Counters, Limits
from meshgrpc.codec.errors import ENHANCE_YOUR_CALM, NO_ERROR, REFUSED_STREAM
from meshgrpc.proxy.h2side import PAUSED_AFTER_FLOOD, H2Side, running_loop
from meshgrpc.proxy.tls import ALPN_H2, PLAINTEXT_PEER, peer_of

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What one listener allows its clients (each default is Envoy's or close to it)."""

    http2: Limits = Limits()  # the codec's: frames, headers, floods, windows
    preface_timeout: float = 10.0  # seconds for a new client's preface and SETTINGS
    idle_timeout: float = 3600.0  # seconds a connection may stay without streams
    max_connections: int = 10_000  # open at once; the proxy raises its fd limit above this
    stall_timeout: float = 30.0  # seconds a client may leave our writes unread
    # Response bytes buffered for one client (read from endpoints, not yet taken by
    # it) before it gets no new streams: Envoy's per-connection buffer limit, 1 MiB.
    # What a client that stops reading pulls from endpoints, holds in memory, and
    # has cancelled at once when it is closed.
    buffer_budget: int = 1 << 20
    flood_memory: float = 1.0  # seconds after a connection ended for a flood during which new ones are delayed
    flood_read_delay: float = 0.025  # seconds such a new connection waits before it is read; 0: not delayed
    max_connection_age: float = 0.0  # seconds before a connection gets GOAWAY (its calls finish); 0: never

    @classmethod
    def parse(cls, settings: list[str]) -> EdgeLimits:
        """From NAME=VALUE settings (`meshgrpc proxy --limit`): any field here or of
        the codec's Limits; raises ValueError naming what is wrong."""
        own, http2 = {}, {}
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "http2"}
        codec_fields = {f.name: f for f in dataclasses.fields(Limits)}
        for setting in settings:
            name, sep, text = setting.partition("=")
            target = own if name in fields else http2 if name in codec_fields else None
            if not sep or target is None:
                known = ", ".join(sorted([*fields, *codec_fields]))
                raise ValueError(f"{setting!r} is not NAME=VALUE with NAME one of: {known}")
            kind = (fields.get(name) or codec_fields[name]).type
            try:
                target[name] = float(text) if kind in ("float", float) else int(text)
            except ValueError:
                raise ValueError(f"{name}: {text!r} is not a number") from None
        return cls(http2=Limits(**http2), **own)


class ListenerCounters:
    """What the listener's limits did (the codec's own counters are in `http2`)."""

    __slots__ = ("http2", "refused_connections", "preface_timeouts", "idle_closed", "refused_for_buffering",
                 "slow_readers_closed", "delayed_after_flood", "aged_out")

    def __init__(self) -> None:
        self.http2 = Counters()
        self.refused_connections = self.preface_timeouts = self.idle_closed = 0
        self.refused_for_buffering = self.slow_readers_closed = self.delayed_after_flood = self.aged_out = 0

    def as_dict(self) -> dict[str, int]:
        return {**self.http2.as_dict(), **{n: getattr(self, n) for n in self.__slots__ if n != "http2"}}


class DownstreamConnection(H2Side):
    """Server side of one client connection."""

    def __init__(self, listener: Listener) -> None:
        limits = listener.limits
        super().__init__(listener.relay.flusher, client=False, limits=limits.http2,
                         counters=listener.counters.http2, stall_timeout=limits.stall_timeout)
        self.listener = listener
        self.relay = listener.relay
        self.goaway_last: int | None = None  # set once we sent GOAWAY
        self.peer_gone = False  # the client sent GOAWAY
        self.buffered = 0  # response bytes relayed to this client's streams and not yet sent
        self.last_active = 0.0  # when its last call started or ended (idle timeout)
        self.opening: dict = {}  # stream id -> (headers, end_stream) of this read, not yet routed
        self.starting: list = []  # calls of this read, started once the whole read is handled
        self.peer = PLAINTEXT_PEER  # who the client is (TLS listeners), read once at the handshake
        self._preface_timer: asyncio.TimerHandle | None = None
        self._budget_timer: asyncio.TimerHandle | None = None
        self._flood_timer: asyncio.TimerHandle | None = None
        self._held: list[bytes] = []  # what arrived before flood_read_delay passed
        self._age_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<DownstreamConnection calls={len(self.calls)} goaway={self.goaway_last} closed={self.closed}>"

    def connection_made(self, transport) -> None:
        listener = self.listener
        super().connection_made(transport)
        if listener.ssl is not None and not self._peer_accepted(transport):
            return
        if len(listener.conns) >= listener.limits.max_connections:
            listener.counters.refused_connections += 1
            self.h2.goaway(ENHANCE_YOUR_CALM, 0, b"too many connections")
            self.hang_up()
            return
        listener.conns.add(self)
        self.last_active = self.relay.clock()
        loop = running_loop()
        if loop is not None:  # (in-memory tests drive connections without a loop)
            self._preface_timer = loop.call_later(listener.limits.preface_timeout, self._no_preface)
            if listener.flooded_recently():
                listener.counters.delayed_after_flood += 1  # paused at its first read (data_received)
                self._flood_timer = loop.call_later(listener.limits.flood_read_delay, self._read_after_flood)
            if listener.limits.max_connection_age > 0:
                self._age_timer = loop.call_later(listener.limits.max_connection_age, self._aged)

    def _peer_accepted(self, transport) -> bool:
        self.peer = peer = peer_of(transport)
        where = "%s:%d" % transport.get_extra_info("peername")[:2]
        if peer.alpn != ALPN_H2:  # RFC 9113 §3.2: h2 over TLS is chosen by ALPN
            log.info("%s connection from %s refused: ALPN %s, not h2", self.listener.name, where, peer.alpn or "none")
            transport.abort()
            return False
        log.info("%s connection from %s: %s", self.listener.name, where, peer.describe())
        return True

    def _read_after_flood(self) -> None:
        self._flood_timer = None
        held, self._held = self._held, []
        self._resume(PAUSED_AFTER_FLOOD)
        for data in held:
            self.data_received(data)
        self.flusher.flush()

    def peer_failed(self) -> None:
        self.listener.flood_seen()

    def data_received(self, data: bytes) -> None:
        if self._flood_timer is not None:
            # Held, with reading paused, until flood_read_delay has passed (uvloop
            # starts reading after connection_made, so a pause there would not hold).
            self._held.append(data)
            self._pause(PAUSED_AFTER_FLOOD)
            return
        super().data_received(data)
        if self._preface_timer is not None and self.h2.peer_settings_received():
            self._preface_timer.cancel()
            self._preface_timer = None

    def after_receive(self) -> None:
        # A stream the client reset in the same read as it opened it is never routed
        # and never becomes an upstream call: rapid reset (CVE-2023-44487) costs us
        # a header block's decoding per stream, nothing more.
        if self.opening:
            opening, self.opening = self.opening, {}
            for stream_id, (headers, end_stream) in opening.items():
                self.relay.start_call(self, stream_id, headers, end_stream)
        starting, self.starting = self.starting, []
        for call in starting:
            call.start()

    def over_budget(self) -> None:
        """Its unread responses passed buffer_budget: no new streams (on_request);
        if it still has not read them after stall_timeout, it is closed."""
        loop = running_loop()
        if self._budget_timer is None and loop is not None:
            self._budget_timer = loop.call_later(self.listener.limits.stall_timeout, self._still_over_budget)

    def _still_over_budget(self) -> None:
        self._budget_timer = None
        if self.buffered > self.listener.limits.buffer_budget and not self.closed:
            self.listener.counters.slow_readers_closed += 1
            self.listener.flood_seen()
            log.info("%r: %d response bytes unread for %gs; closing", self, self.buffered,
                     self.listener.limits.stall_timeout)
            self.h2.goaway(ENHANCE_YOUR_CALM, None, b"responses left unread")
            self.hang_up()

    def _aged(self) -> None:
        self._age_timer = None
        self.listener.counters.aged_out += 1
        self.send_goaway()

    def _no_preface(self) -> None:
        self._preface_timer = None
        self.listener.counters.preface_timeouts += 1
        log.info("%r: no preface and SETTINGS within %gs; closing", self, self.listener.limits.preface_timeout)
        self.transport.abort()

    # -- codec callbacks ------------------------------------------------------------------
    def on_request(self, stream_id: int, headers, end_stream: bool) -> None:
        if self.goaway_last is not None and stream_id > self.goaway_last:
            self.reset(stream_id, REFUSED_STREAM)
            return
        if self.buffered > self.listener.limits.buffer_budget:
            self.listener.counters.refused_for_buffering += 1
            self.reset(stream_id, REFUSED_STREAM)  # read what you asked for first
            return
        self.last_active = self.relay.clock()
        self.opening[stream_id] = (headers, end_stream)  # routed by after_receive, or by its body

    def _routed(self, stream_id: int):
        """The call of a stream opened in this read whose body or trailers arrived: route it now."""
        headers, end_stream = self.opening.pop(stream_id)
        self.relay.start_call(self, stream_id, headers, end_stream)
        return self.calls.get(stream_id)

    def on_response(self, stream_id: int, headers, end_stream: bool) -> None:  # server role: never called
        pass

    def on_data(self, stream_id: int, data, flow_len: int, end_stream: bool) -> None:
        call = self.calls.get(stream_id)
        if call is None and stream_id in self.opening:
            call = self._routed(stream_id)
        if call is None:
            self.data_for_dropped_stream(stream_id, flow_len)
        else:
            call.on_request_data(data, flow_len, end_stream)

    def on_trailers(self, stream_id: int, headers) -> None:
        call = self.calls.get(stream_id)
        if call is None and stream_id in self.opening:
            call = self._routed(stream_id)
        if call is not None:
            call.on_request_trailers(headers)

    def on_reset(self, stream_id: int, code: int) -> None:
        call = self.calls.get(stream_id)
        if call is not None:
            call.on_downstream_reset(code)
        else:
            self.opening.pop(stream_id, None)

    def on_goaway(self, code: int, last_stream_id: int, debug: bytes) -> None:
        self.peer_gone = True
        if code != NO_ERROR:
            self.transport.close()
        else:
            self.call_done()

    # -- lifecycle ------------------------------------------------------------------
    def call_done(self) -> None:
        """A call on this connection ended: close once draining and idle."""
        self.last_active = self.relay.clock()
        if not self.calls and (self.goaway_last is not None or self.peer_gone) and not self.closed:
            self.hang_up()

    def send_goaway(self) -> None:
        if self.closed or self.goaway_last is not None:
            return
        self.goaway_last = self.h2.highest_inbound
        self.h2.goaway(NO_ERROR, self.goaway_last)
        self.touch()
        self.flusher.flush()
        self.call_done()

    def connection_lost(self, exc) -> None:
        self.forget()
        self.opening, self.starting, self._held = {}, [], []
        for timer in (self._preface_timer, self._budget_timer, self._flood_timer, self._age_timer):
            if timer is not None:
                timer.cancel()
        self._preface_timer = self._budget_timer = self._flood_timer = self._age_timer = None
        calls, self.calls = list(self.calls.values()), {}
        for call in calls:
            call.on_downstream_lost()
        self.listener.connection_closed(self)
        self.flusher.flush()


class Listener:
    """The proxy's downstream socket and the connections accepted on it."""

    def __init__(self, relay, host: str, port: int, *, limits: EdgeLimits = EdgeLimits(),
                 reuse_port: bool = False, backlog: int = 1024, ssl=None, name: str = "proxy") -> None:
        self.relay = relay
        self.ssl = ssl  # an ssl.SSLContext (the inbound listener's mutual TLS), or None for h2c
        self.name = name  # how its log lines name it: "proxy" (outbound) or "inbound"
        self.host, self.port = host, port
        self.limits = limits
        self.counters = ListenerCounters()
        self.reuse_port = reuse_port
        self.backlog = backlog
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[DownstreamConnection] = set()
        self.draining = False
        self.last_flood = float("-inf")  # relay clock when a connection last ended for a flood
        self._idle = asyncio.Event()
        self._sweeper: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Listener {self.name} {self.host}:{self.port} conns={len(self.conns)} draining={self.draining}>"

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.relay.loop = loop
        secure = {} if self.ssl is None else {"ssl": self.ssl, "ssl_handshake_timeout": self.limits.preface_timeout}
        self.server = await loop.create_server(
            lambda: DownstreamConnection(self), self.host, self.port,
            reuse_port=self.reuse_port or None, backlog=self.backlog, family=socket.AF_INET
            if ":" not in self.host else socket.AF_INET6, **secure)
        self.host, self.port = self.server.sockets[0].getsockname()[:2]
        self._sweep_later()
        log.info("%s listening on %s:%d", self.name, self.host, self.port)
        return self.host, self.port

    def in_flight(self) -> int:
        return sum(len(c.calls) for c in self.conns)

    def flood_seen(self) -> None:
        self.last_flood = self.relay.clock()

    def flooded_recently(self) -> bool:
        limits = self.limits
        return limits.flood_read_delay > 0 and self.relay.clock() - self.last_flood < limits.flood_memory

    def connection_closed(self, conn: DownstreamConnection) -> None:
        self.conns.discard(conn)
        if self.draining and not self.conns:
            self._idle.set()

    def _sweep_later(self) -> None:
        period = min(60.0, max(0.05, self.limits.idle_timeout / 10))
        self._sweeper = asyncio.get_running_loop().call_later(period, self._sweep)

    def _sweep(self) -> None:
        """Close connections without streams for longer than the idle timeout."""
        now = self.relay.clock()
        for conn in [c for c in self.conns if not c.calls and now - c.last_active >= self.limits.idle_timeout]:
            self.counters.idle_closed += 1
            conn.h2.goaway(NO_ERROR)
            conn.hang_up()
        self._sweep_later()

    async def drain(self, timeout: float) -> bool:
        """GOAWAY to every client, wait up to `timeout` s for streams in flight to
        finish; True if all finished in time. Closes every connection either way."""
        self.draining = True
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            conn.send_goaway()
        if self.conns:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("drain: %d call(s) still in flight after %.1fs", self.in_flight(), timeout)
        drained = not self.conns
        await self.close()
        return drained

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        if self.server is not None:
            await self.server.wait_closed()


async def serve(relay, host: str, port: int, *, reuse_port: bool = False,
                limits: EdgeLimits = EdgeLimits(), ssl=None, name: str = "proxy") -> Listener:
    """Bind a Listener for `relay` (several worker processes may share the port
    with reuse_port=True) and log `NAME listening on HOST:PORT`."""
    listener = Listener(relay, host, port, limits=limits, reuse_port=reuse_port, ssl=ssl, name=name)
    await listener.start()
    return listener
