"""Retries, hedging, breakers, rate limits, faults, mirroring and idle timeouts in
the relay, against in-memory h2 peers on a fake clock (no sockets, no sleeps):
one h2 client in front, one h2 server per endpoint behind, timers fired by hand."""

from __future__ import annotations

import heapq
import itertools
import random

import pytest
from google.protobuf import json_format
from h2.errors import ErrorCodes
from h2.events import DataReceived, RequestReceived, ResponseReceived, StreamReset, TrailersReceived

from meshapi.v1 import resources_pb2
from meshgrpc.proxy import grpc_status as gs
from meshgrpc.proxy.listener import DownstreamConnection, Listener
from meshgrpc.proxy.relay import Relay
from meshgrpc.proxy.state import ProxyState, StateHolder
from meshgrpc.proxy.upstream import UpstreamConnection, UpstreamPools
from tests.integration.relay_harness import Outcomes
from tests.support.specs import cluster_set_of, route_table_of
from tests.unit.test_relay_protocol import GRPC_REQ, Peer, of

BODY = b"\0\0\0\0\x02hi"
OK_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


class FakeTimers:
    """The relay's clock and `later`: time moves only in `advance()`."""

    def __init__(self) -> None:
        self.now = 100.0
        self._queue: list = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    def later(self, delay: float, fn):
        entry = [self.now + delay, next(self._seq), fn]
        heapq.heappush(self._queue, entry)
        return _Handle(entry)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            when, _, fn = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            if fn is not None:
                fn()
        self.now = end


class _Handle:
    def __init__(self, entry) -> None:
        self._entry = entry

    def cancel(self) -> None:
        self._entry[2] = None


class Rig:
    """A relay with route `action` to cluster "c" over endpoints e0, e1, ... (one
    in-memory server each), plus any `extra` clusters (name -> endpoint count)."""

    def __init__(self, action: dict | None = None, endpoints: int = 2, cluster: dict | None = None,
                 extra: dict[str, int] | None = None, seed: int = 0) -> None:
        self.timers = FakeTimers()
        names = {"c": endpoints, **(extra or {})}
        addresses = {n: [f"10.0.{k}.{i}:50051" for i in range(count)] for k, (n, count) in enumerate(names.items())}
        clusters = {n: json_format.ParseDict({"name": n, "lb_policy": "ROUND_ROBIN", **((cluster or {}) if n == "c" else {})},
                                             resources_pb2.Cluster()) for n in names}
        sets = {n: resources_pb2.EndpointSet(cluster=n, endpoints=[resources_pb2.Endpoint(address=a) for a in addrs])
                for n, addrs in addresses.items()}
        rc = json_format.ParseDict({"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"name": "svc", "match": {"prefix": "/"}, "route": {"cluster": "c", **(action or {})}}]}]},
            resources_pb2.RouteConfig())
        rng = random.Random(seed)
        state = ProxyState(route_table_of(rc, rng=rng, clock=self.timers.clock),
                           cluster_set_of(clusters, sets, rng=random.Random(seed), clock=self.timers.clock))
        self.pools = UpstreamPools(clock=self.timers.clock)
        self.outcomes = Outcomes()
        self.relay = Relay(StateHolder(state), self.pools, observer=self.outcomes, clock=self.timers.clock,
                           later=self.timers.later, rng=rng)
        self.client = Peer(DownstreamConnection(Listener(self.relay, "127.0.0.1", 0)), client=True)
        self.ups: dict[str, Peer] = {}
        self.arrivals: list[tuple[Peer, RequestReceived]] = []
        for addrs in addresses.values():
            for address in addrs:
                pool = self.pools.get(address)
                conn = UpstreamConnection(pool)
                self.ups[address] = Peer(conn, client=False)
                pool.conns.append(conn)
        self.exchange()

    @property
    def servers(self) -> list[Peer]:
        return list(self.ups.values())

    def exchange(self) -> None:
        for _ in range(4):
            self.client.exchange()
            for up in self.ups.values():
                self.arrivals += [(up, ev) for ev in of(up.exchange(), RequestReceived)]

    def advance(self, seconds: float) -> None:
        """Deliver what is queued, then let `seconds` pass (timers fire), then deliver again."""
        self.exchange()
        self.timers.advance(seconds)
        self.exchange()

    def request(self, headers=GRPC_REQ, body: bytes | None = BODY, end: bool = True) -> int:
        sid = self.client.h2.get_next_available_stream_id()
        self.client.h2.send_headers(sid, headers, end_stream=end and body is None)
        if body is not None:
            self.client.h2.send_data(sid, body, end_stream=end)
        self.exchange()
        return sid

    def received(self) -> list[tuple[Peer, RequestReceived]]:
        """Every request the servers got, in order of arrival."""
        return list(self.arrivals)

    def answered(self, sid: int):
        """(response headers event, trailers or None) the client got on `sid`."""
        [resp] = of(self.client.events, ResponseReceived, sid)
        trailers = of(self.client.events, TrailersReceived, sid)
        return resp, (trailers[0].headers if trailers else None)

    def status_of(self, sid: int) -> int:
        resp, trailers = self.answered(sid)
        return gs.status_of(trailers if trailers is not None else resp.headers)


def reply(up: Peer, sid: int, status: int = 0, message: str = "", extra=()) -> None:
    """A trailers-only gRPC answer from a server peer."""
    up.h2.send_headers(sid, gs.trailers_only(status, message) + list(extra), end_stream=True)


def reply_ok(up: Peer, sid: int, body: bytes = b"\0\0\0\0\x02ok") -> None:
    up.h2.send_headers(sid, OK_HEADERS)
    up.h2.send_data(sid, body)
    up.h2.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)


def header(ev, name: bytes):
    return dict(ev.headers).get(name)


RETRY = {"retry_policy": {"retry_on": ["UNAVAILABLE"], "num_retries": 2}}


# ---------------------------------------------------------------- retries

def test_unavailable_is_retried_on_the_other_endpoint_with_previous_attempts_header():
    rig = Rig(RETRY)
    sid = rig.request()
    [(first, ev)] = rig.received()
    reply(first, ev.stream_id, gs.UNAVAILABLE, "busy")
    rig.exchange()
    assert len(rig.received()) == 1  # back-off first: the retry waits for its timer
    rig.advance(0.025)
    [_, (second, retry)] = rig.received()
    assert second is not first
    assert header(retry, b"grpc-previous-rpc-attempts") == b"1"
    assert b"".join(e.data for e in of(second.events, DataReceived)) == BODY  # replayed whole
    reply_ok(second, retry.stream_id)
    rig.exchange()
    assert rig.status_of(sid) == 0
    assert ("retry", "c", "status") in rig.outcomes.events


def test_when_retries_run_out_the_last_failure_reaches_the_client_as_it_was():
    rig = Rig(RETRY, endpoints=3)
    sid = rig.request()
    for n in range(3):
        up, ev = rig.received()[-1]
        reply(up, ev.stream_id, gs.UNAVAILABLE, f"busy {n}", extra=[(b"x-from", b"backend")])
        rig.advance(0.25)
    assert len(rig.received()) == 3
    resp, _ = rig.answered(sid)
    assert (b"grpc-message", b"busy 2") in resp.headers and (b"x-from", b"backend") in resp.headers


def test_a_status_the_policy_does_not_name_is_not_retried():
    rig = Rig(RETRY)
    sid = rig.request()
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.INTERNAL, "bug")
    rig.advance(1.0)
    assert len(rig.received()) == 1 and rig.status_of(sid) == gs.INTERNAL


def test_pushback_delays_the_retry_exactly_and_a_negative_one_stops_it():
    rig = Rig(RETRY)
    sid = rig.request()
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.UNAVAILABLE, "", extra=[(b"grpc-retry-pushback-ms", b"500")])
    rig.advance(0.499)
    assert len(rig.received()) == 1
    rig.advance(0.002)
    up, ev = rig.received()[1]
    reply(up, ev.stream_id, gs.UNAVAILABLE, "stop", extra=[(b"grpc-retry-pushback-ms", b"-1")])
    rig.advance(5.0)
    assert len(rig.received()) == 2 and rig.status_of(sid) == gs.UNAVAILABLE


def test_a_response_that_started_is_never_retried():
    rig = Rig(RETRY)
    sid = rig.request()
    up, ev = rig.received()[0]
    up.h2.send_headers(ev.stream_id, OK_HEADERS)
    up.h2.send_data(ev.stream_id, b"\0\0\0\0\x01a")  # one message delivered
    up.h2.send_headers(ev.stream_id, gs.trailers(gs.UNAVAILABLE, "then failed"), end_stream=True)
    rig.advance(1.0)
    assert len(rig.received()) == 1
    _, trailers = rig.answered(sid)
    assert gs.status_of(trailers) == gs.UNAVAILABLE


def test_a_request_over_the_replay_buffer_is_not_retried():
    rig = Rig({**RETRY, "retry_buffer_limit": 16})
    sid = rig.request(body=b"x" * 40)
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.UNAVAILABLE, "busy")
    rig.advance(1.0)
    assert len(rig.received()) == 1 and rig.status_of(sid) == gs.UNAVAILABLE
    assert rig.relay.replay_bytes == 0


def test_replay_memory_of_the_proxy_bounds_what_calls_keep():
    rig = Rig(RETRY)
    rig.relay.replay_memory = 10
    sid = rig.request(body=b"y" * 20)  # fits the route's buffer, not the proxy's memory
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.UNAVAILABLE, "busy")
    rig.advance(1.0)
    assert len(rig.received()) == 1 and rig.status_of(sid) == gs.UNAVAILABLE


def test_reset_before_headers_is_retried_only_when_the_policy_names_it():
    for retry_on, expected in ((["UNAVAILABLE"], 1), (["UNAVAILABLE", "reset"], 2)):
        rig = Rig({"retry_policy": {"retry_on": retry_on}})
        rig.request()
        up, ev = rig.received()[0]
        up.h2.reset_stream(ev.stream_id, ErrorCodes.INTERNAL_ERROR)
        rig.advance(1.0)
        assert len(rig.received()) == expected


def test_refused_stream_is_retried_at_once_even_without_a_policy():
    rig = Rig({})
    sid = rig.request()
    up, ev = rig.received()[0]
    up.h2.reset_stream(ev.stream_id, ErrorCodes.REFUSED_STREAM)
    rig.exchange()  # no timer: a transparent retry does not back off
    other, retry = rig.received()[1]
    assert other is not up and header(retry, b"grpc-previous-rpc-attempts") == b"1"
    reply_ok(other, retry.stream_id)
    rig.exchange()
    assert rig.status_of(sid) == 0


def test_per_try_timeout_cancels_the_slow_attempt_and_retries():
    rig = Rig({"retry_policy": {"per_try_timeout": "0.05s", "num_retries": 1}})
    sid = rig.request()
    slow, ev = rig.received()[0]
    assert header(ev, b"grpc-timeout") == b"50000000n" or header(ev, b"grpc-timeout").endswith(b"u")
    rig.advance(0.05)
    assert [e.error_code for e in of(slow.events, StreamReset, ev.stream_id)] == [ErrorCodes.CANCEL]
    rig.advance(0.025)
    fast, retry = rig.received()[1]
    reply_ok(fast, retry.stream_id)
    rig.exchange()
    assert rig.status_of(sid) == 0


def test_budget_spent_lets_the_original_failure_through():
    rig = Rig(RETRY, cluster={"retry_budget": {"retry_ratio": 0, "min_retries_per_second": 0}})
    sid = rig.request()
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.UNAVAILABLE, "original")
    rig.advance(1.0)
    assert len(rig.received()) == 1
    resp, _ = rig.answered(sid)
    assert (b"grpc-message", b"original") in resp.headers
    assert ("retry_refused", "c", "retry_budget") in rig.outcomes.events


def test_max_retries_bounds_retries_in_flight():
    rig = Rig(RETRY, cluster={"circuit_breaker": {"max_retries": 1}}, endpoints=3)
    a, b = rig.request(), rig.request()
    first = rig.received()
    for up, ev in first:
        reply(up, ev.stream_id, gs.UNAVAILABLE, "busy")
    rig.advance(0.3)
    assert len(rig.received()) == 3  # one retry in flight; the other call got its failure
    assert sorted([rig.status_of(s) for s in (a, b) if of(rig.client.events, ResponseReceived, s)]) == [gs.UNAVAILABLE]
    assert ("retry_refused", "c", "max_retries") in rig.outcomes.events


# ---------------------------------------------------------------- hedging

HEDGE = {"hedge_policy": {"hedge_after": "0.02s", "max_attempts": 3}}


def test_a_slow_attempt_is_hedged_and_the_first_answer_wins_the_loser_is_cancelled():
    rig = Rig(HEDGE, endpoints=3)
    sid = rig.request()
    slow, ev = rig.received()[0]
    rig.advance(0.02)
    fast, hedge = rig.received()[1]
    assert fast is not slow and header(hedge, b"grpc-previous-rpc-attempts") == b"1"
    reply_ok(fast, hedge.stream_id)
    rig.exchange()
    assert rig.status_of(sid) == 0
    assert [e.error_code for e in of(slow.events, StreamReset, ev.stream_id)] == [ErrorCodes.CANCEL]
    rig.advance(1.0)
    assert len(rig.received()) == 2  # no more hedges once answered


def test_a_non_fatal_status_starts_the_next_hedge_at_once_and_a_fatal_one_ends_the_call():
    rig = Rig(HEDGE, endpoints=3)
    sid = rig.request()
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.UNAVAILABLE, "busy")  # non-fatal by default
    rig.exchange()
    up, ev = rig.received()[1]  # hedged at once, no 20 ms wait
    reply(up, ev.stream_id, 5, "gone")  # NOT_FOUND: fatal
    rig.advance(1.0)
    assert len(rig.received()) == 2 and rig.status_of(sid) == 5


def test_hedges_stop_at_max_attempts():
    rig = Rig(HEDGE, endpoints=5)
    rig.request()
    rig.advance(1.0)
    assert len(rig.received()) == 3


# ---------------------------------------------------------------- breakers

def test_max_requests_fails_calls_over_it_at_once_naming_the_breaker():
    rig = Rig({}, cluster={"circuit_breaker": {"max_requests": 1}})
    rig.request()
    sid = rig.request()
    resp, _ = rig.answered(sid)
    assert (b"grpc-status", b"14") in resp.headers
    assert (b"grpc-message", b"cluster c: max_requests 1 reached") in resp.headers
    assert len(rig.received()) == 1


def test_max_pending_requests_refuses_calls_that_would_wait_for_a_connection():
    rig = Rig({}, endpoints=1, cluster={"circuit_breaker": {"max_pending_requests": 1}})
    pool = next(iter(rig.pools.pools.values()))
    pool.conns[0].full = True  # every stream slot taken: calls must wait
    pool.max_streams_per_conn = 0
    pool.connecting = 1  # a connect in progress: nothing else opens one
    rig.request()
    sid = rig.request()
    resp, _ = rig.answered(sid)
    assert (b"grpc-message", b"cluster c: max_pending_requests 1 reached") in resp.headers


# ---------------------------------------------------------------- rate limits, faults, mirrors, idle

def test_rate_limit_answers_resource_exhausted_with_pushback():
    rig = Rig({"rate_limit": {"requests_per_second": 2, "burst": 1}})
    rig.request()
    second = rig.request()
    assert len(rig.received()) == 1
    resp, _ = rig.answered(second)
    assert (b"grpc-status", b"8") in resp.headers
    assert (b"grpc-retry-pushback-ms", b"500") in resp.headers
    assert header(resp, b"grpc-message") == b"route svc: rate limit exceeded"
    rig.advance(0.5)
    rig.request()
    assert len(rig.received()) == 2


def test_fault_abort_and_delay_with_a_header_gate():
    rig = Rig({"fault": {"abort": {"grpc_status": "UNAVAILABLE", "percent": 100}, "header_gate": "x-fault"}})
    tagged = rig.request(GRPC_REQ + [(b"x-fault", b"1")])
    assert rig.status_of(tagged) == gs.UNAVAILABLE and not rig.received()
    rig.request()
    assert len(rig.received()) == 1  # untagged calls are untouched
    delayed = Rig({"fault": {"delay": {"fixed_delay": "0.3s", "percent": 100}}})
    delayed.request()
    delayed.advance(0.29)
    assert not delayed.received()
    delayed.advance(0.02)
    assert len(delayed.received()) == 1


def test_plain_http_abort_gets_the_http_status():
    rig = Rig({"fault": {"abort": {"http_status": 503, "percent": 100}}})
    sid = rig.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/x"), (b":authority", b"svc")],
                      body=None)
    [resp] = of(rig.client.events, ResponseReceived, sid)
    assert (b":status", b"503") in resp.headers


def test_mirror_copies_the_call_to_the_shadow_and_its_silence_costs_the_call_nothing():
    rig = Rig({"mirror": {"cluster": "shadow", "max_in_flight": 1}}, extra={"shadow": 1})
    shadow = rig.ups["10.0.1.0:50051"]
    sid = rig.request()
    [copy] = of(shadow.events, RequestReceived)
    assert header(copy, b":authority") == b"svc-shadow"
    assert b"".join(e.data for e in of(shadow.events, DataReceived)) == BODY
    [(up, ev)] = [(up, ev) for up, ev in rig.received() if up is not shadow]
    reply_ok(up, ev.stream_id)
    rig.exchange()
    assert rig.status_of(sid) == 0  # the shadow never answered
    rig.request()
    assert len(of(shadow.events, RequestReceived)) == 1  # max_in_flight 1: not mirrored again
    rig.advance(15.0)  # a copy with no deadline is cancelled after 15 s
    assert of(shadow.events, StreamReset, copy.stream_id)
    rig.request()
    assert len(of(shadow.events, RequestReceived)) == 2


def test_idle_stream_is_ended_with_deadline_exceeded():
    rig = Rig({"idle_timeout": "1s"})
    sid = rig.request(end=False)
    up, ev = rig.received()[0]
    rig.advance(0.6)
    rig.client.h2.send_data(sid, b"\0\0\0\0\x01x")  # a frame: the idle clock starts again
    rig.exchange()
    rig.advance(0.6)
    assert not of(rig.client.events, ResponseReceived, sid)
    rig.advance(0.5)
    assert rig.status_of(sid) == gs.DEADLINE_EXCEEDED
    assert of(up.events, StreamReset, ev.stream_id)


def test_deadline_covers_retries_and_back_off():
    # Full jitter draws the back-off from [0, 10 s): past the 0.1 s deadline but for a 1% draw.
    rig = Rig({"timeout": "0.1s", "retry_policy": {"num_retries": 5, "retry_back_off": {
        "base_interval": "10s", "max_interval": "10s"}}})
    sid = rig.request()
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.UNAVAILABLE, "busy")
    rig.advance(1.0)
    # A back-off that would end after the deadline is not waited for: the failure stands.
    assert len(rig.received()) == 1 and rig.status_of(sid) == gs.UNAVAILABLE


@pytest.mark.parametrize("action", [RETRY, HEDGE, {"mirror": {"cluster": "c"}}])
def test_nothing_is_left_behind_after_calls_end(action):
    rig = Rig(action, endpoints=3)
    for _ in range(5):
        rig.request()
    for up, ev in rig.received():
        if not of(up.events, StreamReset, ev.stream_id):
            reply_ok(up, ev.stream_id)
    rig.advance(20.0)
    assert not rig.client.side.calls
    assert all(not up.side.calls for up in rig.servers)
    assert rig.relay.replay_bytes == 0
    cluster = rig.relay.state.current.clusters.get("c")
    assert (cluster.load.requests, cluster.load.pending, cluster.load.retries) == (0, 0, 0)


def test_back_off_never_exceeds_max_interval():
    rig = Rig({"retry_policy": {"num_retries": 6, "retry_back_off": {"base_interval": "0.05s",
                                                                    "max_interval": "0.08s"}}}, endpoints=2)
    rig.request()
    for n in range(1, 6):
        up, ev = rig.received()[-1]
        reply(up, ev.stream_id, gs.UNAVAILABLE, "busy")
        rig.advance(0.08)  # base x 2^n would be 0.1 s and more; the cap keeps every wait under 0.08 s
        assert len(rig.received()) == n + 1


def test_hedge_on_statuses_decides_which_failures_let_the_other_attempts_go_on():
    rig = Rig({"hedge_policy": {"hedge_after": "0.02s", "max_attempts": 3, "hedge_on_statuses": ["INTERNAL"]}},
              endpoints=3)
    sid = rig.request()
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.UNAVAILABLE, "fatal here")
    rig.advance(1.0)
    assert len(rig.received()) == 1 and rig.status_of(sid) == gs.UNAVAILABLE
    rig = Rig({"hedge_policy": {"hedge_after": "0.5s", "max_attempts": 3, "hedge_on_statuses": ["INTERNAL"]}},
              endpoints=3)
    rig.request()
    up, ev = rig.received()[0]
    reply(up, ev.stream_id, gs.INTERNAL, "non-fatal here")
    rig.exchange()
    assert len(rig.received()) == 2  # the next hedge went at once


def test_rate_limit_key_header_gives_each_caller_a_bucket_and_max_keys_bounds_them():
    rig = Rig({"rate_limit": {"requests_per_second": 1, "burst": 1, "key_header": "x-user", "max_keys": 2}})
    def call(user: bytes) -> int:
        return rig.request(GRPC_REQ + [(b"x-user", user)])
    call(b"a")
    call(b"b")
    assert len(rig.received()) == 2  # two callers, two buckets
    limited = call(b"a")
    assert rig.status_of(limited) == gs.RESOURCE_EXHAUSTED
    call(b"c")  # a third key: the least recently used bucket (b) is forgotten
    call(b"b")  # b starts again with a full bucket
    assert len(rig.received()) == 4


def test_mirror_percent_copies_that_share_of_calls():
    rig = Rig({"mirror": {"cluster": "shadow", "percent": 30}}, extra={"shadow": 1}, seed=3)
    shadow = rig.ups["10.0.1.0:50051"]
    for _ in range(200):
        rig.request()
        up, ev = next((up, ev) for up, ev in reversed(rig.received()) if up is not shadow)
        reply_ok(up, ev.stream_id)
        rig.exchange()
    copies = len(of(shadow.events, RequestReceived))
    assert 40 <= copies <= 80, copies
