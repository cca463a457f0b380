"""Starting relayed calls: the per-call path from a downstream request to its
first upstream attempt.

`Relay.start_call` reads the request head (request_head.py), judges the call by
the service's authorization policies (the inbound relay only: inbound.py), takes
one look at the current ProxyState, routes, applies the route's rate limit and fault
injection, checks the cluster's max_requests breaker, arms the deadline (the
client's grpc-timeout capped by the route's timeout) and hands the Call its first
attempt (call.py). Everything after that is the Call's.

The relay owns what calls share: the clock and timers (injected, so timing runs
on a fake clock in tests), the random source (seeded in tests), the replay memory
all calls' request buffers draw from (bounded per proxy; a call that does not fit
is simply not retried), and the observer that hears of each finished call and of
resilience events (`on_call_end`, `on_event`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Callable

from meshgrpc.codec.errors import PROTOCOL_ERROR

from meshgrpc.proxy import grpc_status as gs
from meshgrpc.proxy.attempt import Attempt
from meshgrpc.proxy.call import MIRROR_TIMEOUT, Call, CallState
from meshgrpc.proxy.access_log import access_record
from meshgrpc.proxy.request_head import Reject, parse_request
from meshgrpc.proxy.inbound import InboundAuthorization, denial_message
from meshgrpc.proxy.tls import NO_CERTIFICATE
from meshgrpc.proxy.trace import propagate

log = logging.getLogger(__name__)

# Request bytes all calls together may keep for replay (retries, hedges, mirrors).
REPLAY_MEMORY = 16 << 20


class Relay:
    """Starts calls for downstream connections and routes them.

    state: a StateHolder (`.current` -> ProxyState(routes, clusters, versions));
    pools: an UpstreamPools; observer: optional object with
    `on_call_end(route, cluster, endpoint, grpc_status, http_status, latency_s)`
    called once per call (names are '' when the call never got that far;
    grpc_status is None for plain HTTP) and `on_event(event, name, detail)` for
    retries, hedges, breaker overflows, rate limits, faults and mirrors.
    `clock` is monotonic seconds; `later(delay, fn)` schedules a timer and returns
    a handle with cancel() (the event loop's call_later by default).
    """

    def __init__(self, state, pools, observer=None, clock=time.monotonic,
                 later: Callable | None = None, rng: random.Random | None = None,
                 replay_memory: int = REPLAY_MEMORY, access_log=None, trace_headers: bool = True,
                 authorization: InboundAuthorization | None = None) -> None:
        self.state = state
        self.authorization = authorization  # the inbound relay's: judges each call before routing
        self.pools = pools
        self.flusher = pools.flusher
        self.observer = observer
        self.access_log = access_log  # access_log.AccessLog, or None: no access log
        self.trace_headers = trace_headers  # x-request-id and traceparent kept or made, per hop (trace.py)
        self.clock = clock
        self.rng = rng or random.Random()
        self._later = later
        self.loop = None
        self.replay_memory = replay_memory
        self.replay_bytes = 0  # kept by all calls now

    # -- the per-call path ----------------------------------------------------------------
    def start_call(self, down, sid: int, headers, ended: bool) -> None:
        """A downstream request (its header block): read it, route it, start its first attempt."""
        head = parse_request(headers)
        if type(head) is Reject:
            down.reset(sid, PROTOCOL_ERROR)
            return
        call = Call(self, down, sid, head.grpc, self.clock())
        call.path = head.path[1]
        down.calls[sid] = call
        if ended:
            call.body.end = True
        if self.authorization is not None and self._denied(call, down, head.path[1], headers):
            return
        state = self.state.current
        routes = state.routes
        if routes is None:
            call.fail(gs.UNAVAILABLE, "proxy has no route configuration yet")
            return
        route = routes.route(head.authority[1] if head.authority is not None else b"", head.path[1], headers)
        if route is None:
            call.fail(gs.UNIMPLEMENTED, "no route for " + head.path[1].decode("utf-8", "replace"), ok=True)
            return
        call.route = route
        regular = head.regular
        if route.headers_to_remove:
            drop = route.headers_to_remove
            regular = [h for h in regular if h[0] not in drop]
        up = [head.method, head.scheme, head.path]
        if head.authority is not None:
            up.append(head.authority)
        added = regular + list(route.headers_to_add) if route.headers_to_add else regular
        if self.trace_headers:
            call.hop = hop = propagate(added, self.rng.getrandbits)
            added = hop.headers
        call.up_headers = up + added
        if route.rate_limiter is not None and self._rate_limited(call, route, regular):
            return
        cluster_name = route.pick_cluster()
        cluster = state.clusters.get(cluster_name)
        if cluster is None:
            call.fail(gs.UNAVAILABLE, f"cluster {cluster_name} is not configured")
            return
        call.cluster = cluster
        refused = cluster.load.admit_request(cluster.spec.circuit_breaker)
        if refused is not None:
            self.emit("overflow", cluster.name, "max_requests")
            call.fail(gs.UNAVAILABLE, refused)
            return
        cluster.load.requests += 1
        cluster.budget.deposit(call.t0)
        call.counted = True
        self._arm_timers(call, route, head.timeout)
        down.starting.append(call)  # its first attempt once the whole read is handled

    def start(self, call: Call) -> None:
        """The call's read is handled and the client did not reset it: apply the
        route's fault injection, then send its first attempt."""
        route = call.route
        if route.fault is not None and self._fault(call, route, call.up_headers):
            return
        call.begin()

    def _denied(self, call: Call, down, path: bytes, headers) -> bool:
        """Judges an inbound call by its caller's SPIFFE ID (read at the handshake)."""
        identity = down.peer.spiffe_id
        decision = self.authorization.judge(identity, path, headers)
        if decision.allowed:
            return False
        call.fail(gs.PERMISSION_DENIED, denial_message(decision, identity, path), ok=True)
        return True

    def _rate_limited(self, call: Call, route, headers) -> bool:
        wait = route.rate_limiter.admit(headers)
        if not wait:
            return False
        self.emit("rate_limited", route.name, "")
        call.fail(gs.RESOURCE_EXHAUSTED, f"route {route.name}: rate limit exceeded", ok=True,
                  pushback_ms=max(1, math.ceil(wait * 1000)))
        return True

    def _fault(self, call: Call, route, headers) -> bool:
        """Applies an injected abort or delay; True if the call was aborted or is delayed."""
        delay, abort = route.fault.decide(headers)
        if abort is not None:
            self.emit("fault", route.name, "abort")
            call.fail(abort.grpc_status, "fault injected by proxy", ok=True, http_status=abort.http_status)
            return True
        if delay is not None:
            self.emit("fault", route.name, "delay")
            call.state = CallState.DELAYED
            call.arm("delay", delay, call.begin)
            return True
        return False

    def _arm_timers(self, call: Call, route, client_timeout: float | None) -> None:
        deadline = client_timeout
        if route.timeout is not None and (deadline is None or route.timeout < deadline):
            deadline = route.timeout
        if deadline is not None:
            call.arm_deadline(deadline)
        if route.action.idle_timeout is not None:
            call.arm_idle(route.action.idle_timeout)

    # -- what calls share ------------------------------------------------------------------
    def attach(self, attempt: Attempt) -> None:
        """Queue `attempt` on its endpoint's pool (which opens its stream when it can)."""
        ep = attempt.endpoint
        mutual_tls = attempt.cluster.spec.mutual_tls
        if mutual_tls is None:
            pool = self.pools.get(ep.address, ep.host, ep.port)
        else:
            pool = self.pools.get_secure(ep.address, ep.host, ep.port, attempt.cluster.name, mutual_tls.peer_identity)
            if pool is None:
                attempt.fail_call(NO_CERTIFICATE.format(cluster=attempt.cluster.name))
                return
        attempt.pool = pool
        pool.attach(attempt)

    def maybe_mirror(self, call: Call) -> None:
        """Start a shadow copy of `call` (its route mirrors) when the draw says so."""
        policy = call.route.mirror
        if not call.body.kept:
            return
        shadow = self.state.current.clusters.get(policy.spec.cluster)
        ep = shadow.pick_avoiding((), self.hash_key(call)) if shadow is not None else None
        if ep is None or not policy.admit():
            return
        attempt = Attempt(call, 0, ep, shadow, mirror=True)
        call.mirror, call.mirror_state = attempt, policy
        self.emit("mirror", policy.spec.cluster, call.route.name)
        attempt.timer = self.later(call.deadline - self.clock() if call.deadline is not None else MIRROR_TIMEOUT,
                                   attempt.cancel)
        ep.on_start()
        self.attach(attempt)

    def hash_key(self, call: Call) -> bytes | None:
        header = call.route.hash_header
        if header is None:
            return None
        for name, value in call.up_headers:
            if name == header:
                return value
        return None

    def reserve_replay(self, new_size: int, limit: int, n: int) -> bool:
        """Whether a call's replay buffer may grow by `n` bytes to `new_size`."""
        if new_size > limit or self.replay_bytes + n > self.replay_memory:
            return False
        self.replay_bytes += n
        return True

    def release_replay(self, n: int) -> None:
        self.replay_bytes -= n

    def later(self, delay: float, fn):
        """Run `fn` in `delay` seconds, then write what it queued; returns a handle with cancel()."""
        if self._later is None:
            self._later = self._loop().call_later
        return self._later(delay, lambda: self._run_and_flush(fn))

    def _run_and_flush(self, fn) -> None:
        fn()
        self.flusher.flush()

    def flush(self) -> None:
        self.flusher.flush()

    def emit(self, event: str, name: str, detail: str) -> None:
        obs = self.observer
        if obs is not None:
            obs.on_event(event, name, detail)

    def call_ended(self, call: Call, grpc_status, latency: float) -> None:
        obs, access_log = self.observer, self.access_log
        if obs is None and access_log is None:
            return
        route = call.route.name if call.route is not None else ""
        cluster = call.cluster.name if call.cluster is not None else ""
        ep = call.tried[-1].address if call.tried else ""
        if obs is not None:
            obs.on_call_end(route, cluster, ep, grpc_status, call.http_status, latency)
        if access_log is not None:
            access_log.log(access_record(call, route, cluster, ep, grpc_status, latency))

    def _loop(self):
        if self.loop is None:
            import asyncio
            self.loop = asyncio.get_running_loop()
        return self.loop
