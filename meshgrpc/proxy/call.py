"""One relayed call: a downstream stream and the attempts that serve it.

A Call goes through one explicit state:

    RECEIVED ─▶ (DELAYED) ─▶ ATTEMPTING ⇄ BACKOFF ─▶ RESPONDING ─▶ DONE
               (a fault delay)  (attempts in flight)  (waiting to retry)  (one attempt answers)

While ATTEMPTING, nothing has gone to the client yet, so a failed attempt may be
replaced (retry.py decides whether and when; the cluster's ClusterLoad holds the
breakers and the budget) and a slow one may be hedged (hedge.py). The first
attempt whose response headers arrive wins: the others are cancelled with
RST_STREAM CANCEL, the call is RESPONDING, and from then on the response is
relayed frame by frame by that attempt's Pipe. A call the proxy cannot serve is
answered like a gRPC server would (trailers-only with grpc-status and
grpc-message) or, for plain HTTP/2, with the matching HTTP status.

Nothing here awaits: every step runs inside a protocol callback or a timer, so an
ordinary call costs no task and no future. Timers come from the relay
(`relay.later`), so they can be driven by a fake clock.
"""

from __future__ import annotations

import enum
import logging
from meshgrpc.codec.errors import CANCEL, INTERNAL_ERROR, NO_ERROR

from meshgrpc.proxy import grpc_status as gs
from meshgrpc.proxy.attempt import Attempt, RequestBody, State as AttemptState, timeout_field
from meshgrpc.proxy.orca.report import take_load_report
from meshgrpc.proxy.seams import RelayServices, StreamSide
from meshgrpc.proxy.pipe import Pipe
from meshgrpc.proxy.pushback import pushback_seconds
from meshgrpc.proxy.request_head import HOP_BY_HOP
from meshgrpc.proxy.resilience.hedge import HedgeState
from meshgrpc.proxy.resilience.retry import Failure, Kind, RetryState, pushback_of


log = logging.getLogger(__name__)

# A mirrored copy with no deadline of its own is cancelled after this long
# (Envoy's default route timeout): a shadow that never answers must not pin memory.
MIRROR_TIMEOUT = 15.0


class CallState(enum.Enum):
    RECEIVED = "received"  # routed; its first attempt goes once the read that brought it is handled
    DELAYED = "delayed"  # held by an injected fault delay
    ATTEMPTING = "attempting"  # attempts in flight, nothing sent to the client yet
    BACKOFF = "backoff"  # waiting to start a retry
    RESPONDING = "responding"  # one attempt's response is being relayed
    DONE = "done"


class Call:
    """One request/response exchange between a downstream stream and its attempts."""

    __slots__ = ("relay", "down", "down_sid", "grpc", "state", "t0", "deadline", "route", "cluster",
                 "up_headers", "body", "attempts", "winner", "tried", "retry", "hedge", "last_failure",
                 "grpc_status", "http_status", "timers", "idle", "idle_at", "mirror", "mirror_state", "counted",
                 "retry_reserved", "path", "hop", "bytes_in", "bytes_out")

    def __init__(self, relay: RelayServices, down: StreamSide, down_sid: int, grpc: bool, t0: float) -> None:
        self.relay = relay
        self.down, self.down_sid = down, down_sid
        self.grpc = grpc
        self.state = CallState.RECEIVED
        self.t0 = t0
        self.deadline: float | None = None
        self.route = self.cluster = None
        self.up_headers: list = []
        self.body = RequestBody(relay, down, down_sid)
        self.attempts: list[Attempt] = []  # live (not DONE) attempts, oldest first
        self.winner: Attempt | None = None  # the attempt whose response is relayed
        self.tried: list = []  # endpoints tried so far, for avoidance
        self.retry: RetryState | None = None
        self.hedge: HedgeState | None = None
        self.last_failure: tuple | None = None  # (Failure, trailers-only headers, reset code)
        self.grpc_status = self.http_status = None
        self.timers: dict[str, object] | None = None  # "deadline", "hedge", "backoff", "idle", "delay"
        self.idle: float | None = None  # the route's idle_timeout
        self.idle_at = 0.0  # time of the last frame, when `idle` is set
        self.mirror: Attempt | None = None
        self.mirror_state = None  # the route's MirrorPolicy, while a mirror copy runs
        self.counted = False  # counted in the cluster's max_requests
        self.retry_reserved = False  # a retry admitted and counted in max_retries, not started yet
        self.path = b""  # the request's :path
        self.hop = None  # trace.Hop: its request and trace ids, once routed
        self.bytes_in = self.bytes_out = 0  # request DATA from the client, response DATA to it

    def __repr__(self) -> str:
        return f"<Call down={self.down_sid} {self.state.value} attempts={self.attempts!r}>"

    # -- starting -----------------------------------------------------------------------
    def start(self) -> None:
        """Called once the read that brought the request is handled."""
        if self.state is CallState.RECEIVED:
            self.relay.start(self)

    def begin(self) -> None:
        """First attempt (and mirror, and the hedge timer)."""
        self.state = CallState.ATTEMPTING
        route = self.route
        hedge = route.action.hedge
        if hedge is not None:
            self.hedge = HedgeState(hedge)
        if route.mirror is not None:
            self.relay.maybe_mirror(self)
        self.start_attempt()
        if self.hedge is not None and self.state is CallState.ATTEMPTING:
            self.arm("hedge", hedge.hedge_after, self._hedge_due)

    def start_attempt(self, retry: bool = False) -> None:
        cluster = self.cluster
        key = self.relay.hash_key(self) if self.route.hash_header is not None else None
        ep = cluster.pick_avoiding(self.tried, key)
        if ep is None:
            self._give_up_or(gs.UNAVAILABLE, f"no healthy endpoint in cluster {cluster.name}")
            return
        self.state = CallState.ATTEMPTING
        attempt = Attempt(self, len(self.tried), ep, cluster)
        self.tried.append(ep)
        self.attempts.append(attempt)
        if retry and self.retry_reserved:  # the attempt carries the reservation in max_retries
            self.retry_reserved = False
            attempt.counts_as_retry = True
        per_try = self.route.action.retry.per_try_timeout if self.route.action.retry is not None else None
        if per_try is not None:
            attempt.timer = self.relay.later(per_try, lambda: self._per_try_timeout(attempt))
        ep.on_start()
        self.relay.attach(attempt)

    def attempt_headers(self, attempt: Attempt) -> list:
        """The request headers of one attempt: grpc-timeout last (the fields before
        it stay cacheable) and, on retries, grpc-previous-rpc-attempts (gRFC A6)."""
        headers = self.up_headers
        if attempt.mirror:
            headers = [_shadow(h) if h[0] == b":authority" else h for h in headers]
        elif attempt.number:
            headers = headers + [(b"grpc-previous-rpc-attempts", b"%d" % attempt.number)]
        left = self._time_left(attempt)
        if left is not None:
            headers = headers + [timeout_field(left)]
        return headers

    def _time_left(self, attempt: Attempt) -> float | None:
        """The call's remaining time, capped by the per-try timeout (not for a mirror)."""
        left = self.deadline - self.relay.clock() if self.deadline is not None else None
        policy = self.route.action.retry
        if policy is not None and policy.per_try_timeout is not None and not attempt.mirror:
            if left is None or policy.per_try_timeout < left:
                return policy.per_try_timeout
        return left

    # -- request side (downstream events) -------------------------------------------------
    def on_request_data(self, data, flow_len: int, end_stream: bool) -> None:
        self._touch()
        self.bytes_in += len(data)
        body = self.body
        if not body.add(data, flow_len, self.route.action.retry_buffer_limit if self.route else 0):
            self._stop_replaying()
            if self.state is CallState.DONE:  # given up: the bytes only need their window back
                self.down.ack(self.down_sid, flow_len)
                return
            body.add(data, flow_len, 0)
        if end_stream:
            body.end = True
        self._pump_attempts()

    def on_request_end(self) -> None:
        self.body.end = True
        self._pump_attempts()

    def on_request_trailers(self, headers) -> None:
        self.body.trailers = [h for h in headers if h[0] not in HOP_BY_HOP]
        self.body.end = True
        self._pump_attempts()

    def _pump_attempts(self) -> None:
        for attempt in self.attempts:
            attempt.pump()
        if self.mirror is not None:
            self.mirror.pump()

    def _stop_replaying(self) -> None:
        """The request outgrew the replay buffer: keep one attempt, drop the mirror."""
        self.body.release()
        if self.mirror is not None:
            self.mirror.cancel()
        for attempt in self.attempts[1:]:
            attempt.cancel()
        if self.state is CallState.BACKOFF:
            self._give_up()

    def window_opened(self) -> None:
        """The client's window grew: resume the response."""
        if self.winner is not None and self.winner.resp is not None:
            self.winner.resp.pump()

    def on_downstream_reset(self, code) -> None:
        self._abandon()

    def on_downstream_lost(self) -> None:
        self._abandon()

    def _abandon(self) -> None:
        """The client went away: stop every attempt (a mirror whose request is
        complete runs on; it needs nothing more from the client)."""
        self._end(gs.CANCELLED, cancel_status=gs.CANCELLED, ok=True)

    # -- attempts' outcomes -----------------------------------------------------------------
    def attempt_responded(self, attempt: Attempt, headers, ended: bool) -> None:
        if self.state is CallState.DONE:
            return
        if ended or not self.grpc:
            headers = self._endpoint_feedback(attempt, headers)
        if ended and self.grpc:
            status = gs.status_of(headers)
            if status is not None and status != gs.OK and self.state is CallState.ATTEMPTING:
                failure = Failure(Kind.STATUS, f"upstream answered {status}", status, pushback_of(headers))
                if status == gs.DEADLINE_EXCEEDED and attempt.timer is not None:
                    # The endpoint enforced the per-try bound it was sent as grpc-timeout.
                    failure = Failure(Kind.PER_TRY_TIMEOUT, "per-try timeout exceeded upstream")
                attempt.finish(status, self.relay.clock())
                if self._retry_after(attempt, failure, headers, None):
                    return
                self._forward_final(headers)
                return
        self._commit(attempt)
        self._forward_headers(headers, ended)
        if ended:
            attempt.finish(self.grpc_status, self.relay.clock(), ok=self._ok())
            self._end_responded()

    def attempt_failed(self, attempt: Attempt, failure: Failure, reset_code) -> None:
        if self.state in (CallState.DONE, CallState.RESPONDING):
            return
        if not self._retry_after(attempt, failure, None, reset_code):
            self._give_up()

    def attempt_ended(self, attempt: Attempt) -> None:
        """Bookkeeping when any attempt (or the mirror) ends."""
        if attempt.mirror:
            if self.mirror is attempt:
                self.mirror = None
                self.mirror_state.in_flight -= 1
                self._release_body_if_done()
            return
        if attempt in self.attempts:
            self.attempts.remove(attempt)
        if attempt.counts_as_retry:
            attempt.counts_as_retry = False
            attempt.cluster.load.retries -= 1

    def _retry_after(self, attempt: Attempt, failure: Failure, headers, reset_code) -> bool:
        """Plans the next attempt after `attempt` failed; False when the failure is final."""
        self.last_failure = (failure, headers, reset_code)
        if self.hedge is not None and not failure.never_received:
            return self._hedge_after_failure(failure)
        if not self.body.kept or self.state is CallState.DONE:
            return bool(self.attempts)
        if self.retry is None:
            self.retry = RetryState(self.route.action.retry)
        decision = self.retry.decide(failure, self.relay.rng)
        if decision is None:
            return bool(self.attempts)
        delay, transparent = decision
        if failure.kind is Kind.CONNECT and not self.cluster.has_untried(self.tried):
            return bool(self.attempts)  # the only endpoints left refuse connections: nothing to gain
        if self._too_late(delay) or not self._admit_retry(transparent):
            return bool(self.attempts)
        log.debug("%r: retrying in %.3fs after %s", self, delay, failure.message)
        self.relay.emit("retry", self.cluster.name, failure.kind.value)
        if delay <= 0.0:
            self.start_attempt(retry=not transparent)
        else:
            self.state = CallState.BACKOFF
            self.arm("backoff", delay, lambda: self.start_attempt(retry=True))
        return True

    def _admit_retry(self, transparent: bool) -> bool:
        """The budget (and, for retries the policy asked for, max_retries) allow it:
        a transparent retry (the endpoint never received the call) counts against
        the budget only."""
        cluster = self.cluster
        if transparent:
            refused = None if cluster.budget.withdraw() else f"cluster {cluster.name}: retry budget exhausted"
        else:
            refused = cluster.load.admit_retry(cluster.spec.circuit_breaker, cluster.budget)
        if refused is not None:
            self.relay.emit("retry_refused", cluster.name, _breaker_of(refused))
            return False
        if not transparent:
            self._reserve_retry()
        return True

    def _reserve_retry(self) -> None:
        """Count the retry in max_retries from the moment it is decided, back-off included."""
        self.cluster.load.retries += 1
        self.retry_reserved = True

    def _too_late(self, delay: float) -> bool:
        return self.deadline is not None and self.relay.clock() + delay >= self.deadline

    # -- hedging --------------------------------------------------------------------------
    def _hedge_due(self) -> None:
        if self.state is not CallState.ATTEMPTING or not self.body.kept or not self.hedge.may_start():
            return
        if self._start_hedge() and self.hedge.may_start():
            self.arm("hedge", self.hedge.policy.hedge_after, self._hedge_due)

    def _start_hedge(self) -> bool:
        cluster = self.cluster
        refused = cluster.load.admit_retry(cluster.spec.circuit_breaker, cluster.budget)
        if refused is not None:
            self.relay.emit("retry_refused", cluster.name, _breaker_of(refused))
            return False
        self.hedge.started += 1
        self._reserve_retry()
        self.relay.emit("hedge", cluster.name, "")
        self.start_attempt(retry=True)
        return True

    def _hedge_after_failure(self, failure: Failure) -> bool:
        status = failure.status if failure.kind is Kind.STATUS else gs.UNAVAILABLE
        if self.hedge.fatal(status):
            return False
        delay = self.hedge.next_delay(failure.pushback)
        if delay is None or not self.body.kept:
            return bool(self.attempts)
        self._cancel_timer("hedge")
        if delay <= 0.0:
            if not self._start_hedge():
                return bool(self.attempts)
        else:
            self.arm("hedge", delay, self._hedge_due)
        return True

    # -- timers ---------------------------------------------------------------------------
    def _per_try_timeout(self, attempt: Attempt) -> None:
        attempt.timer = None
        if attempt.state is AttemptState.DONE or self.state is not CallState.ATTEMPTING:
            return
        attempt.cancel(gs.DEADLINE_EXCEEDED)
        failure = Failure(Kind.PER_TRY_TIMEOUT, "per-try timeout exceeded in proxy")
        if not self._retry_after(attempt, failure, None, None):
            self._give_up()

    def arm_deadline(self, seconds: float) -> None:
        self.deadline = self.t0 + seconds
        self.arm("deadline", seconds, self._deadline_passed)

    def _deadline_passed(self) -> None:
        if self.state is not CallState.DONE:
            self.fail(gs.DEADLINE_EXCEEDED, "deadline exceeded in proxy", ok=True)

    def arm_idle(self, idle: float) -> None:
        self.idle = idle
        self.idle_at = self.relay.clock()
        self.arm("idle", idle, self._idle_check)

    def _idle_check(self) -> None:
        if self.state is CallState.DONE:
            return
        quiet = self.relay.clock() - self.idle_at
        if quiet < self.idle:
            self.arm("idle", self.idle - quiet, self._idle_check)
            return
        self.fail(gs.DEADLINE_EXCEEDED, f"stream idle for {self.idle:g}s", ok=True)

    def _touch(self) -> None:
        if self.idle is not None:
            self.idle_at = self.relay.clock()

    def arm(self, name: str, delay: float, fn) -> None:
        """Run `fn` (then flush output) in `delay` seconds, replacing timer `name`."""
        if self.timers is None:
            self.timers = {}
        else:
            self._cancel_timer(name)
        self.timers[name] = self.relay.later(delay, lambda: self._fire(name, fn))

    def _fire(self, name: str, fn) -> None:
        if self.timers is not None:
            self.timers.pop(name, None)
        fn()

    def _cancel_timer(self, name: str) -> None:
        if self.timers is not None:
            timer = self.timers.pop(name, None)
            if timer is not None:
                timer.cancel()

    # -- the response -----------------------------------------------------------------------
    def _commit(self, attempt: Attempt) -> None:
        """`attempt` answers the call; every other attempt is cancelled."""
        self.state = CallState.RESPONDING
        self.winner = attempt
        attempt.state = AttemptState.RESPONDING
        attempt.resp = Pipe(self, attempt.conn, attempt.sid, self.down, self.down_sid)
        if len(self.attempts) > 1:
            for other in list(self.attempts):
                if other is not attempt:
                    other.cancel()
        if self.timers:
            self._cancel_timer("hedge")
            self._cancel_timer("backoff")
        if attempt.timer is not None:  # per-try timeouts bound the wait for response headers
            attempt.timer.cancel()
            attempt.timer = None
        if self.mirror is None:
            self.body.release()

    def _forward_headers(self, headers, ended: bool) -> None:
        out = []
        for h in headers:  # the fields as received (request_head doc)
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
        self._touch()

    def _forward_final(self, headers) -> None:
        """A failed attempt's trailers-only answer, as received, ends the call."""
        self.state = CallState.RESPONDING
        self._forward_headers(headers, True)
        self._end_responded()

    def response_trailers(self, attempt: Attempt, headers) -> None:
        headers = self._endpoint_feedback(attempt, headers)
        self.grpc_status = gs.status_of(headers)
        attempt.resp.finish_with([h for h in headers if h[0] not in HOP_BY_HOP])

    def _endpoint_feedback(self, attempt: Attempt, headers) -> list:
        """What an answer tells the balancer about its endpoint: a pushback
        (grpc-retry-pushback-ms in a gRPC answer's trailers, Retry-After on plain
        HTTP/2 response headers) and the backend's ORCA load report, which is taken
        out of what goes downstream unless the route keeps it."""
        seconds = pushback_seconds(headers, self.grpc)
        if seconds is not None:
            attempt.endpoint.pushed_back(seconds)
        if not self.grpc:
            return headers
        return take_load_report(headers, attempt.endpoint, self.route.action.keep_load_reports)

    def pipe_done(self, pipe: Pipe) -> None:
        """The winner's response is complete."""
        self._touch()
        if self.state is not CallState.RESPONDING or self.winner is None or pipe is not self.winner.resp:
            return
        winner = self.winner
        if not winner.sent_all:
            # Response complete before the request: stop the rest of it
            # (RFC 9113 §8.1: RST_STREAM NO_ERROR lets the client stop sending).
            winner.conn.reset(winner.sid, CANCEL)
            self.down.reset(self.down_sid, NO_ERROR)
        winner.resp = None
        winner.finish(self.grpc_status, self.relay.clock(), ok=self._ok())
        self._end_responded()

    def committed_reset(self, attempt: Attempt, code) -> None:
        """The winner's stream was reset upstream."""
        if attempt.resp is not None and attempt.resp.end:  # complete (e.g. RST NO_ERROR after trailers)
            return
        attempt.finish(None, self.relay.clock(), ok=False)
        if code == NO_ERROR:
            code = INTERNAL_ERROR
        self.down.reset(self.down_sid, code)
        self._end(None, ok=False)

    def committed_lost(self, attempt: Attempt, why: str) -> None:
        """The winner's connection dropped."""
        resp = attempt.resp
        if resp is not None and resp.end:  # everything arrived; let the buffered tail drain
            resp.src = None
            return
        attempt.finish(None, self.relay.clock(), ok=False)
        self.fail(gs.UNAVAILABLE, why)

    def _ok(self) -> bool:
        if self.grpc:
            return self.grpc_status not in gs.ENDPOINT_FAILURES
        return self.http_status is None or self.http_status < 500

    # -- failing ------------------------------------------------------------------------------
    def _give_up(self) -> None:
        """No attempt is left and none will be made: the last failure is the answer."""
        if self.attempts or self.state is CallState.DONE:
            return
        failure, headers, reset_code = self.last_failure
        if headers is not None:
            self._forward_final(headers)
        elif reset_code is not None and failure.kind is Kind.RESET:
            self.down.reset(self.down_sid, INTERNAL_ERROR if reset_code == NO_ERROR
                            else reset_code)
            self._end(None, ok=False)
        elif failure.kind is Kind.PER_TRY_TIMEOUT:
            self.fail(gs.DEADLINE_EXCEEDED, failure.message, ok=False)
        else:
            self.fail(gs.UNAVAILABLE, failure.message)

    def _give_up_or(self, status: int, message: str) -> None:
        if self.last_failure is not None:
            self._give_up()
        else:
            self.fail(status, message)

    def fail(self, status: int, message: str, ok: bool = False, pushback_ms: int | None = None,
             http_status: int | None = None) -> None:
        """End the call with a status of the proxy's own making (`http_status`
        overrides the HTTP answer a plain HTTP/2 call gets for `status`)."""
        if self.state is CallState.DONE:
            return
        down, sid = self.down, self.down_sid
        responded = self.state is CallState.RESPONDING
        if not down.closed:
            if self.grpc:
                extra = [(b"grpc-retry-pushback-ms", b"%d" % pushback_ms)] if pushback_ms is not None else []
                block = gs.trailers(status, message) if responded else gs.trailers_only(status, message)
                down.h2.send_headers(sid, block + extra, end_stream=True)
            elif not responded:
                send_http_error(down, sid, http_status or gs.HTTP_FOR_STATUS.get(status, 502), message)
            else:
                down.h2.reset_stream(sid, INTERNAL_ERROR)
            down.touch()
        self._end(status if self.grpc else None, cancel_status=gs.CANCELLED, ok=ok)

    def _end_responded(self) -> None:
        self._end(self.grpc_status, ok=self._ok())

    def _end(self, grpc_status, cancel_status: int = gs.CANCELLED, ok: bool = True) -> None:
        if self.state is CallState.DONE:
            return
        self.state = CallState.DONE
        if self.timers:
            for timer in self.timers.values():
                timer.cancel()
            self.timers = None
        if self.attempts:
            for attempt in list(self.attempts):
                attempt.cancel(cancel_status)
        if self.mirror is not None and not self.mirror.sent_all:
            self.mirror.cancel()
        self.down.calls.pop(self.down_sid, None)
        self.down.call_done()
        self._release_body_if_done()
        self.winner = None  # attempts point at the call; the call no longer at them (no cycle)
        if self.counted:
            self.cluster.load.requests -= 1
            self.counted = False
        if self.retry_reserved:  # ended while waiting to retry
            self.retry_reserved = False
            self.cluster.load.retries -= 1
        self.relay.call_ended(self, grpc_status, self.relay.clock() - self.t0)

    def _release_body_if_done(self) -> None:
        """Keep the request for replay only while a retry, hedge or mirror may need it."""
        if self.mirror is None and self.state in (CallState.RESPONDING, CallState.DONE):
            self.body.release()
            if self.state is CallState.DONE:
                self.body.drop()


def send_http_error(down, sid: int, status: int, message: str) -> None:
    body = message.encode() + b"\n"
    h2 = down.h2
    fits = len(body) <= min(h2.send_window(sid), h2.max_outbound_frame_size)
    headers = [(b":status", b"%d" % status), (b"content-type", b"text/plain; charset=utf-8")]
    if not fits:
        h2.send_headers(sid, headers, end_stream=True)
        return
    h2.send_headers(sid, headers + [(b"content-length", b"%d" % len(body))])
    h2.send_data(sid, body, end_stream=True)


def _breaker_of(refusal: str) -> str:
    """The limit named in a refusal ("cluster x: max_retries 3 reached" -> "max_retries")."""
    return refusal.split(": ", 1)[-1].split(" ", 1)[0] if "budget" not in refusal else "retry_budget"


def _shadow(field):
    """:authority with Envoy's "-shadow" suffix on the host, for a mirrored copy."""
    value = field[1]
    host, sep, port = value.rpartition(b":")
    if sep and port.isdigit() and not value.endswith(b"]"):
        return (b":authority", host + b"-shadow:" + port)
    return (b":authority", value + b"-shadow")
