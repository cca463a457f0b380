"""Pairing a downstream stream with an upstream one: the per-call path.

`Relay.start_call` turns a downstream request into a Call: header hygiene, one read
of the current ProxyState, route -> cluster -> endpoint, then a stream on a pooled
upstream connection. Frames are relayed as they arrive in both directions by two
Pipes (request: downstream -> upstream, response: upstream -> downstream). Nothing
here awaits: every step runs inside a protocol callback or a timer, so an ordinary
call costs no task and no future.

Flow control is end to end: a Pipe acknowledges bytes to its source only when the
destination's send window took them, so each direction buffers at most one stream
window (Tuning.stream_window) and a slow reader backs up to the writer.

When the relay must fail a call itself it answers like a gRPC server would
(trailers-only HEADERS with grpc-status/grpc-message) or, for plain HTTP/2, with the
matching HTTP status. Outcomes go to the endpoint once per attempt
(`on_first_response(latency)` when its answer starts, `on_finish(ok, latency,
grpc_status, responded)` at the end) and to the optional observer once per call.

Header fields are forwarded as the very tuples h2 decoded, never rebuilt: a field
received never-indexed (an hpack NeverIndexedHeaderTuple) must be forwarded
never-indexed (RFC 7541 §6.2.3), and keeping the object costs nothing. The
`grpc-timeout` the relay computes per call goes out never-indexed too: a value
new on every call would otherwise be inserted into the upstream HPACK table each
time, evicting the entries that let whole header blocks repeat (hpack_cache).
"""

from __future__ import annotations

import collections
import logging
import time

from h2.errors import ErrorCodes
from hpack import NeverIndexedHeaderTuple

from meshgrpc.proxy import grpc_status as gs
from meshgrpc.proxy.pipe import Pipe

log = logging.getLogger(__name__)

# Connection-specific headers never forwarded (RFC 9113 §8.2.2); `host` is folded
# into :authority.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                        b"upgrade", b"http2-settings", b"host"})
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority"})
# Request bytes kept to replay a call on another connection when an upstream
# refuses it (GOAWAY above last_stream_id, REFUSED_STREAM) before answering.
REPLAY_LIMIT = 64 * 1024


class Call:
    """One request/response exchange between a downstream stream and an upstream one."""

    __slots__ = ("relay", "down", "down_sid", "up", "up_sid", "req", "resp", "grpc",
                 "route", "cluster", "endpoint", "pool", "t0", "attempt_t0", "deadline", "timer",
                 "up_headers", "replay", "resp_started", "grpc_status", "http_status",
                 "finished", "waiting_in", "retries")

    def __init__(self, relay, down, down_sid: int, grpc: bool, t0: float) -> None:
        self.relay = relay
        self.down, self.down_sid = down, down_sid
        self.up = None
        self.up_sid = 0
        self.req = Pipe(self, down, down_sid, None, 0)
        self.resp = Pipe(self, None, 0, down, down_sid)
        self.grpc = grpc
        self.route = self.cluster = self.endpoint = self.pool = None
        self.t0 = t0
        self.attempt_t0 = t0  # start of the current attempt (retries restart it)
        self.deadline = None
        self.timer = None
        self.up_headers = None
        self.replay: list | None = []
        self.resp_started = False
        self.grpc_status = None
        self.http_status = None
        self.finished = False
        self.waiting_in = None
        self.retries = 0

    def __repr__(self) -> str:
        up = self.endpoint.address if self.endpoint is not None else None
        return f"<Call down={self.down_sid} up={up}#{self.up_sid} finished={self.finished}>"

    # -- upstream side ----------------------------------------------------------------
    def open_on(self, conn) -> None:
        """Open the upstream stream on `conn` (raises h2 TooManyStreamsError untouched)."""
        h2 = conn.h2
        sid = h2.get_next_available_stream_id()
        headers = self.up_headers
        if self.deadline is not None:
            left = self.deadline - self.relay.clock()
            # Last, so the fields before it can be served from the HPACK cache.
            headers = headers + [NeverIndexedHeaderTuple(b"grpc-timeout", gs.format_timeout(max(left, 0.0)))]
        req = self.req
        end_now = req.end and not req.chunks and req.trailers is None
        h2.send_headers(sid, headers, end_stream=end_now)
        if self.waiting_in is not None:
            # It waited for a connection: the attempt's round trip starts now, or
            # PEAK_EWMA would read connection setup as the endpoint's latency (a
            # peak on every new endpoint's first call, decaying for many seconds).
            self.attempt_t0 = self.relay.clock()
            self.waiting_in = None
        self.up, self.up_sid = conn, sid
        conn.calls[sid] = self
        conn.touch()
        req.dst, req.dst_sid = conn, sid
        self.resp.src, self.resp.src_sid = conn, sid
        if end_now:
            req.done = True
        else:
            req.pump()

    def on_request_data(self, ev) -> None:
        replay = self.replay
        if replay is not None:
            replay.append(ev.data)
            if sum(map(len, replay)) > REPLAY_LIMIT:
                self.replay = None
        self.req.push(ev.data, ev.flow_controlled_length, ev.stream_ended is not None)

    def on_response(self, headers, ended: bool) -> None:
        self.replay = None
        # The first response ends the call's "pending" time for latency-aware
        # balancing, so a long stream does not read as a slow endpoint.
        self.endpoint.on_first_response(self.relay.clock() - self.attempt_t0)
        out = []
        for h in headers:  # the fields as received (module doc)
            name = h[0]
            if name in HOP_BY_HOP:
                continue
            if name == b":status":
                self.http_status = int(h[1])
            elif name == b"grpc-status":
                value = h[1]
                self.grpc_status = int(value) if value.isdigit() else gs.UNKNOWN
            out.append(h)
        self.down.h2.send_headers(self.down_sid, out, end_stream=ended)
        self.down.touch()
        self.resp_started = True
        if ended:  # trailers-only: one HEADERS frame with END_STREAM, as received
            self.resp.done = True
            self.pipe_done(self.resp)

    def on_response_trailers(self, headers) -> None:
        self.grpc_status = gs.status_of(headers)
        self.resp.finish_with([h for h in headers if h[0] not in HOP_BY_HOP])

    def on_upstream_reset(self, code) -> None:
        if self.resp.end:  # response complete (e.g. RST NO_ERROR after trailers)
            self.req.drop()
            return
        if code == ErrorCodes.REFUSED_STREAM and self.retry_elsewhere("refused by upstream"):
            return
        self.req.drop()
        self.resp.drop()
        if code == ErrorCodes.NO_ERROR:
            code = ErrorCodes.INTERNAL_ERROR if not self.resp_started else code
        self.down.reset(self.down_sid, code)
        self._end(ok=False, grpc_status=None)

    def on_upstream_lost(self, why: str) -> None:
        if self.resp.end:  # everything arrived; let the buffered tail drain
            self.resp.src = None
            self.req.drop()
            return
        self.fail(gs.UNAVAILABLE, why, ok=False)

    def retry_elsewhere(self, why: str) -> bool:
        """Re-send an unanswered call on another connection (the upstream never
        processed it); False if it cannot be replayed."""
        if self.resp_started or self.replay is None or self.retries >= 2 or self.finished:
            return False
        self.retries += 1
        old = self.up
        if old is not None:
            old.calls.pop(self.up_sid, None)
            old.blocked.discard(self.req)
            old.reset(self.up_sid, ErrorCodes.CANCEL)
            self.pool.release(old)
        self.endpoint.on_finish(False, self.relay.clock() - self.attempt_t0, gs.UNAVAILABLE)
        self.attempt_t0 = self.relay.clock()
        req = self.req
        req.chunks = collections.deque([b"".join(self.replay)] if self.replay else [])
        req.buffered = sum(map(len, req.chunks))
        req.done = False
        req.dst, req.dst_sid = None, 0
        self.resp.src = None
        self.up = None
        log.debug("%r: retrying elsewhere: %s", self, why)
        self.relay.dispatch(self, retry=True)
        return True

    # -- downstream side ----------------------------------------------------------------
    def on_downstream_reset(self, code) -> None:
        if self.up is not None:
            self.up.reset(self.up_sid, ErrorCodes.CANCEL)
        self.req.drop()
        self.resp.drop()
        self._end(ok=True, grpc_status=gs.CANCELLED)

    def on_downstream_lost(self) -> None:
        if self.up is not None:
            self.up.reset(self.up_sid, ErrorCodes.CANCEL)
        self.req.drop()
        self.resp.drop()
        self._end(ok=True, grpc_status=gs.CANCELLED)

    def on_request_trailers(self, headers) -> None:
        self.req.finish_with([h for h in headers if h[0] not in HOP_BY_HOP])

    def on_deadline(self) -> None:
        self.timer = None
        if not self.finished:
            self.fail(gs.DEADLINE_EXCEEDED, "deadline exceeded in proxy", ok=True)
            self.relay.flusher.flush()

    def fail(self, status: int, message: str, ok: bool = False) -> None:
        """End the call with a status of the proxy's own making."""
        if self.finished:
            return
        if self.up is not None:
            self.up.reset(self.up_sid, ErrorCodes.CANCEL)
        self.req.drop()
        self.resp.drop()
        down, sid = self.down, self.down_sid
        if not down.closed:
            if self.grpc and self.resp_started:
                down.h2.send_headers(sid, gs.trailers(status, message), end_stream=True)
            elif self.grpc:
                down.h2.send_headers(sid, gs.trailers_only(status, message), end_stream=True)
            elif not self.resp_started:
                send_http_error(down, sid, gs.HTTP_FOR_STATUS.get(status, 502), message)
            else:
                down.h2.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            down.touch()
        self._end(ok=ok, grpc_status=status if self.grpc else None)

    # -- completion --------------------------------------------------------------------
    def pipe_done(self, pipe: Pipe) -> None:
        if pipe is self.resp and not self.finished:
            if not self.req.done:
                # Response complete before the request: stop the rest of it
                # (RFC 9113 §8.1: RST_STREAM NO_ERROR lets the client stop sending).
                self.req.drop()
                if self.up is not None:
                    self.up.reset(self.up_sid, ErrorCodes.CANCEL)
                self.down.reset(self.down_sid, ErrorCodes.NO_ERROR)
            self._end(ok=self._ok(), grpc_status=self.grpc_status)

    def _ok(self) -> bool:
        if self.grpc:
            return self.grpc_status not in gs.ENDPOINT_FAILURES
        return self.http_status is None or self.http_status < 500

    def _end(self, ok: bool, grpc_status) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.down.calls.pop(self.down_sid, None)
        self.down.call_done()
        if self.waiting_in is not None:
            self.waiting_in.forget(self)
            self.waiting_in = None
        up = self.up
        if up is not None:
            up.calls.pop(self.up_sid, None)
            up.blocked.discard(self.req)
            self.pool.release(up)
        latency = self.relay.clock() - self.t0
        if self.endpoint is not None:
            self.endpoint.on_finish(ok, self.relay.clock() - self.attempt_t0 if self.retries else latency,
                                    grpc_status, self.resp_started)
        self.relay.call_ended(self, grpc_status, latency)


def send_http_error(down, sid: int, status: int, message: str) -> None:
    body = message.encode() + b"\n"
    h2 = down.h2
    fits = len(body) <= min(h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
    headers = [(b":status", b"%d" % status), (b"content-type", b"text/plain; charset=utf-8")]
    if not fits:
        h2.send_headers(sid, headers, end_stream=True)
        return
    h2.send_headers(sid, headers + [(b"content-length", b"%d" % len(body))])
    h2.send_data(sid, body, end_stream=True)


class Relay:
    """Starts calls for downstream connections and routes them.

    state: a StateHolder (`.current` -> ProxyState(routes, clusters, versions));
    pools: an UpstreamPools; observer: optional object with
    `on_call_end(route, cluster, endpoint, grpc_status, http_status, latency_s)`
    called once per call (names are '' when the call never got that far;
    grpc_status is None for plain HTTP). `clock` is monotonic seconds.
    """

    def __init__(self, state, pools, observer=None, clock=time.monotonic) -> None:
        self.state = state
        self.pools = pools
        self.flusher = pools.flusher
        self.observer = observer
        self.clock = clock
        self.loop = None

    def start_call(self, down, ev) -> None:
        """A downstream RequestReceived: hygiene, route, pick, open upstream."""
        sid = ev.stream_id
        # The pseudo-header fields themselves, as received (module doc).
        method = path = scheme = authority = timeout = None
        ctype = b""
        regular = []
        for h in ev.headers:
            name = h[0]
            if name[:1] == b":":
                if name == b":path":
                    path = h
                elif name == b":method":
                    method = h
                elif name == b":authority":
                    authority = h
                elif name == b":scheme":
                    scheme = h
                else:
                    down.reset(sid, ErrorCodes.PROTOCOL_ERROR)
                    return
            elif name in HOP_BY_HOP:
                if name == b"host" and authority is None:
                    authority = _renamed(h, b":authority")
            elif name == b"grpc-timeout":
                timeout = gs.parse_timeout(h[1])
            elif name == b"te" and h[1] != b"trailers":
                continue
            else:
                if name == b"content-type":
                    ctype = h[1]
                regular.append(h)
        if method is None or path is None or scheme is None:
            down.reset(sid, ErrorCodes.PROTOCOL_ERROR)
            return
        call = Call(self, down, sid, ctype.startswith(b"application/grpc"), self.clock())
        down.calls[sid] = call
        if ev.stream_ended is not None:
            call.req.end = True
        state = self.state.current
        routes = state.routes
        if routes is None:
            call.fail(gs.UNAVAILABLE, "proxy has no route configuration yet")
            return
        route = routes.route(authority[1] if authority is not None else b"", path[1], ev.headers)
        if route is None:
            call.fail(gs.UNIMPLEMENTED, "no route for " + path[1].decode("utf-8", "replace"), ok=True)
            return
        call.route = route
        if route.headers_to_remove:
            drop = route.headers_to_remove
            regular = [h for h in regular if h[0] not in drop]
        head = [method, scheme, path]
        if authority is not None:
            head.append(authority)
        call.up_headers = head + regular + list(route.headers_to_add)
        deadline = timeout
        if route.timeout is not None and (deadline is None or route.timeout < deadline):
            deadline = route.timeout
        if deadline is not None:
            call.deadline = call.t0 + deadline
            call.timer = self._loop().call_later(deadline, call.on_deadline)
        cluster_name = route.pick_cluster()
        call.cluster = state.clusters.get(cluster_name)
        if call.cluster is None:
            call.fail(gs.UNAVAILABLE, f"cluster {cluster_name} is not configured")
            return
        self.dispatch(call)

    def dispatch(self, call: Call, retry: bool = False) -> None:
        """Pick an endpoint of the call's cluster and attach the call to its pool."""
        cluster = call.cluster
        hash_key = None
        if call.route.hash_header is not None:
            hash_key = _header(call.up_headers, call.route.hash_header)
        ep = cluster.pick(hash_key)
        if retry and ep is not None and ep is call.endpoint:
            ep = cluster.pick_other(ep, hash_key)  # another endpoint when there is one
        if ep is None:
            call.endpoint = None
            call.fail(gs.UNAVAILABLE, f"no healthy endpoint in cluster {cluster.name}")
            return
        call.endpoint = ep
        ep.on_start()
        call.pool = self.pools.get(ep.address, ep.host, ep.port)
        call.pool.attach(call)

    def call_ended(self, call: Call, grpc_status, latency: float) -> None:
        obs = self.observer
        if obs is not None:
            route = call.route.name if call.route is not None else ""
            cluster = call.cluster.name if call.cluster is not None else ""
            ep = call.endpoint.address if call.endpoint is not None else ""
            obs.on_call_end(route, cluster, ep, grpc_status, call.http_status, latency)

    def _loop(self):
        if self.loop is None:
            import asyncio
            self.loop = asyncio.get_running_loop()
        return self.loop


def _renamed(field, name: bytes):
    """`field`'s value under another name, never-indexed if `field` was."""
    if type(field) is NeverIndexedHeaderTuple:
        return NeverIndexedHeaderTuple(name, field[1])
    return (name, field[1])


def _header(headers, name: bytes):
    for n, v in headers:
        if n == name:
            return v
    return None
