"""One upstream stream of a call (an Attempt), and the request bytes every
attempt of the call reads (RequestBody).

A call has one attempt, or several over time (retries) or at once (hedging), and
perhaps a mirrored copy. They all send the same request, so its DATA lives once
in the call's RequestBody and each attempt keeps its own cursor into it, sending
as its stream's flow-control window allows.

While the call may still be replayed (kept), the body keeps every byte, up to
the route's retry_buffer_limit and the proxy's replay memory, and acknowledges
bytes to the client as they arrive: the client is not held back by the slowest
attempt, and the memory is bounded by the limit. Once the call cannot be replayed
(its response started, or its request outgrew the buffer) one attempt is left;
the body then keeps only what that attempt has not sent, and acknowledges bytes
only as that attempt sends them (end-to-end backpressure, one stream window).

An attempt reports to its call (`attempt_responded`, `attempt_failed`,
`attempt_ended`) and to its endpoint (`on_start`, `on_first_response`,
`on_finish`: balancing and outlier detection), exactly once each.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from meshgrpc.codec import NeverIndexed
from meshgrpc.codec import errors
from meshgrpc.codec.errors import CANCEL, REFUSED_STREAM

from meshgrpc.proxy import grpc_status as gs
from meshgrpc.proxy.pipe import Pipe
from meshgrpc.proxy.resilience.retry import Failure, Kind

from meshgrpc.proxy.seams import CallHooks, RelayServices, StreamSide

if TYPE_CHECKING:
    from meshgrpc.proxy.cluster import ClusterState
    from meshgrpc.proxy.endpoint import EndpointState


class RequestBody:
    """The request's DATA and end (END_STREAM or trailers), shared by a call's attempts.

    `chunks[i]` is chunk number `first + i`; attempts hold absolute chunk numbers."""

    __slots__ = ("relay", "down", "down_sid", "chunks", "first", "size", "kept", "owed", "end", "trailers")

    def __init__(self, relay: RelayServices, down: StreamSide, down_sid: int) -> None:
        # No reference to the call: the call holds the body, and nothing makes a cycle.
        self.relay, self.down, self.down_sid = relay, down, down_sid
        self.chunks: list = []
        self.first = 0
        self.size = 0  # bytes kept for replay (counted in the relay's replay memory)
        self.kept = True  # every byte is kept so the call can be replayed
        self.owed = 0  # bytes received and not yet acknowledged to the client
        self.end = False
        self.trailers = None

    def add(self, data: bytes, flow_len: int, limit: int) -> bool:
        """Takes DATA from the client; False if it does not fit the replay buffer
        (the caller then stops replaying and calls `add` again)."""
        n = len(data)
        if self.kept:
            if not self.relay.reserve_replay(self.size + n, limit, n):
                return False
            self.size += n
            self.chunks.append(bytes(data))  # kept past the codec's callback: own it
            self.down.ack(self.down_sid, flow_len)
            return True
        if flow_len > n:
            self.down.ack(self.down_sid, flow_len - n)  # padding is never forwarded
        if n:
            self.chunks.append(bytes(data))
            self.owed += n
        return True

    def release(self) -> None:
        """Stop keeping bytes for replay (the single attempt left sends the rest)."""
        if self.kept:
            self.kept = False
            self.relay.release_replay(self.size)
            self.size = 0

    def sent(self, attempt: Attempt, n: int) -> None:
        """`attempt` sent `n` more bytes: once not kept, acknowledge and forget them."""
        if self.kept:
            return
        done = attempt.next - self.first
        if done > 0:
            del self.chunks[:done]
            self.first += done
        n = min(n, self.owed)
        if n:
            self.owed -= n
            self.down.ack(self.down_sid, n)

    def drop(self) -> None:
        """The call is over: forget every byte and hand the client its window back."""
        self.release()
        self.chunks.clear()
        if self.owed:
            self.down.ack(self.down_sid, self.owed)
            self.owed = 0


class State(enum.Enum):
    WAITING = "waiting"  # queued in the endpoint's pool for a connection or stream slot
    OPEN = "open"  # the stream is open; no response yet
    RESPONDING = "responding"  # the call's response comes from this attempt
    DONE = "done"


class Attempt:
    """One upstream stream of a call, on a pooled connection of one endpoint."""

    __slots__ = ("call", "number", "endpoint", "cluster", "counts_as_retry", "pool", "conn", "sid", "state",
                 "t0", "next", "offset", "sent_all", "resp", "timer", "mirror", "responded", "waiting")

    def __init__(self, call: CallHooks, number: int, endpoint: EndpointState, cluster: ClusterState, *,
                 mirror: bool = False) -> None:
        self.call = call
        self.number = number  # 0 for the first attempt
        self.endpoint = endpoint
        self.cluster = cluster  # the endpoint's cluster (the shadow one for a mirror)
        self.counts_as_retry = False  # counted in the cluster's retries in flight
        self.pool = None
        self.conn = None
        self.sid = 0
        self.state = State.WAITING
        self.t0 = call.relay.clock()
        self.next = 0  # next chunk of the request body to send (absolute number)
        self.offset = 0  # bytes of that chunk already sent
        self.sent_all = False  # END_STREAM (or trailers) sent upstream
        self.resp: Pipe | None = None
        self.timer = None  # per-try timeout (or a mirror's own deadline)
        self.mirror = mirror  # a shadow copy: its answer is discarded
        self.responded = False
        self.waiting = False  # queued in the pool (counted in the cluster's pending)

    def __repr__(self) -> str:
        return f"<Attempt #{self.number} {self.endpoint.address}#{self.sid} {self.state.value}>"

    # -- opening ------------------------------------------------------------------------
    def open_on(self, conn) -> None:
        """Open the stream on `conn` (raises the codec's CannotOpenStream untouched)."""
        call = self.call
        h2 = conn.h2
        sid = h2.next_stream_id()
        headers = call.attempt_headers(self)
        body = call.body
        end_now = body.end and self.next - body.first >= len(body.chunks) and body.trailers is None
        h2.send_headers(sid, headers, end_stream=end_now)
        # The round trip starts now, not when the attempt began waiting for a
        # connection: PEAK_EWMA must not read connection set-up as the endpoint's latency.
        self.t0 = call.relay.clock()
        self.conn, self.sid, self.state = conn, sid, State.OPEN
        conn.calls[sid] = self
        conn.touch()
        if end_now:
            self.sent_all = True
        else:
            self.pump()

    def pump(self) -> None:
        """Send what the stream's window allows; END_STREAM or trailers once all is sent."""
        conn = self.conn
        if conn is None or self.sent_all or self.state is State.DONE:
            return
        body = self.call.body
        h2, sid, chunks = conn.h2, self.sid, body.chunks
        i = self.next - body.first
        if i >= len(chunks) and not body.end:
            return  # nothing new to send
        sent = 0
        while i < len(chunks):
            window = h2.send_window(sid)
            if window <= 0:
                break
            chunk, offset = chunks[i], self.offset
            left = len(chunk) - offset
            limit = min(window, h2.max_outbound_frame_size)
            if left > limit:
                h2.send_data(sid, chunk[offset:offset + limit])
                self.offset += limit
                sent += limit
                conn.touch()
                continue
            i += 1
            self.offset = 0
            last = i == len(chunks) and body.end and body.trailers is None
            h2.send_data(sid, chunk[offset:] if offset else chunk, end_stream=last)
            sent += left
            self.sent_all = last
        if i != self.next - body.first:  # something went out (an empty END_STREAM frame counts)
            conn.touch()
        self.next = body.first + i
        if sent:
            body.sent(self, sent)
        if i < len(chunks):
            conn.blocked.add(self)
            return
        conn.blocked.discard(self)
        if body.end and not self.sent_all:
            if body.trailers is not None:
                h2.send_headers(sid, body.trailers, end_stream=True)
            else:
                h2.send_data(sid, b"", end_stream=True)
            self.sent_all = True
            conn.touch()

    window_opened = pump

    # -- upstream events ----------------------------------------------------------------
    def on_response(self, headers, ended: bool) -> None:
        if self.state is not State.OPEN:
            return
        self.responded = True
        self.endpoint.on_first_response(self.call.relay.clock() - self.t0)
        if self.mirror:
            if ended:
                self.finish(gs.status_of(headers), self.call.relay.clock())
            return
        self.call.attempt_responded(self, headers, ended)

    def on_data(self, data, flow_len: int, end_stream: bool) -> None:
        call = self.call
        if call.idle is not None:
            call.idle_at = call.relay.clock()
        if self.resp is not None:
            self.resp.push(data, flow_len, end_stream)
        else:  # a mirror's answer, or a stream already given up: hand the window back
            self.conn.ack(self.sid, flow_len)
            if end_stream and self.mirror:
                self.finish(None, self.call.relay.clock())

    def on_trailers(self, headers) -> None:
        if self.resp is not None:
            self.call.response_trailers(self, headers)
        elif self.mirror:
            self.finish(gs.status_of(headers), self.call.relay.clock())

    def on_reset(self, code) -> None:
        if self.state is State.DONE:
            return
        if self.mirror:
            self.finish(None, self.call.relay.clock(), ok=False)
        elif self.state is State.RESPONDING:
            self.call.committed_reset(self, code)
        elif code == REFUSED_STREAM:
            self.fail(Failure(Kind.REFUSED, f"stream refused by {self.endpoint.address}"))
        else:
            self.fail(Failure(Kind.RESET, f"upstream {self.endpoint.address} reset the stream ({_code(code)})"),
                      reset_code=code)

    def on_lost(self, why: str) -> None:
        """The connection carrying this stream is gone."""
        if self.state is State.DONE:
            return
        if self.mirror:
            self.finish(None, self.call.relay.clock(), ok=False)
        elif self.state is State.RESPONDING:
            self.call.committed_lost(self, why)
        else:
            self.fail(Failure(Kind.RESET, why))

    def on_refused(self, why: str, unreachable_until: float = 0.0) -> None:
        """GOAWAY above this stream, or the pool could not send it: never received.
        `unreachable_until`: the endpoint refuses connections until then."""
        if self.state is State.DONE:
            return
        if unreachable_until:
            self.endpoint.unreachable(unreachable_until)
        self.fail(Failure(Kind.CONNECT if self.conn is None else Kind.REFUSED, why))

    def on_breaker(self, why: str) -> None:
        """The cluster's max_pending_requests refused to queue this attempt."""
        self.fail_call(why)

    def fail_call(self, why: str) -> None:
        """No attempt of the call can be sent (`why` says why): the call ends UNAVAILABLE."""
        if self.state is not State.DONE:
            self.finish(None, self.call.relay.clock(), ok=False)
            if not self.mirror:
                self.call.fail(gs.UNAVAILABLE, why)

    # -- ending ---------------------------------------------------------------------
    def fail(self, failure: Failure, reset_code=None) -> None:
        """This attempt failed before the call's response started."""
        self.finish(failure.status, self.call.relay.clock(), ok=False)
        if not self.mirror:
            self.call.attempt_failed(self, failure, reset_code)

    def cancel(self, status: int = gs.CANCELLED) -> None:
        """The proxy stops this attempt (a losing hedge, a per-try timeout, the call ended)."""
        if self.state is State.DONE:
            return
        if self.conn is not None:
            self.conn.reset(self.sid, CANCEL)
        self.finish(status, self.call.relay.clock(), ok=status == gs.CANCELLED)

    def finish(self, grpc_status: int | None, now: float, ok: bool | None = None) -> None:
        """Detach from the connection or pool and report the outcome, once."""
        if self.state is State.DONE:
            return
        self.state = State.DONE
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn = self.conn
        if conn is not None:
            conn.calls.pop(self.sid, None)
            conn.blocked.discard(self)
            self.pool.release(conn)
        elif self.pool is not None:
            self.pool.forget(self)
        if self.resp is not None:
            self.resp.drop()
        if ok is None:
            ok = grpc_status not in gs.ENDPOINT_FAILURES
        self.endpoint.on_finish(ok, now - self.t0, grpc_status, self.responded)
        self.call.attempt_ended(self)


def timeout_field(seconds: float):
    """`grpc-timeout` for the upstream, never-indexed: a value new on every call
    would otherwise enter the upstream HPACK table each time, evicting the entries
    that let whole header blocks repeat (the codec's HPACK result cache)."""
    return NeverIndexed(b"grpc-timeout", gs.format_timeout(max(seconds, 0.0)))


def _code(code: int) -> str:
    return _CODE_NAMES.get(code, str(code))


_CODE_NAMES = {getattr(errors, n): n for n in dir(errors) if n.isupper()}
