"""Relay protocol edge cases against in-memory h2 peers (no sockets): a client
H2Connection in front, server H2Connections behind, bytes moved by hand."""

from __future__ import annotations

import asyncio
import logging

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated, DataReceived, PingAckReceived, RequestReceived, ResponseReceived,
    StreamEnded, StreamReset, TrailersReceived,
)
from h2.settings import SettingCodes

from meshapi.v1 import resources_pb2
from tests.support.specs import cluster_set_of, route_table_of
from meshgrpc.proxy import grpc_status as gs
from meshgrpc.codec import Limits
from meshgrpc.proxy.upstream import UpstreamLimits
from tests.support.h2_oracle import GoawayTolerantStateMachine
from meshgrpc.proxy.listener import DownstreamConnection, EdgeLimits, Listener
from meshgrpc.proxy.relay import Relay
from meshgrpc.proxy.state import ProxyState, StateHolder
from meshgrpc.proxy.upstream import UpstreamConnection, UpstreamPools

ADDR = "10.0.0.1:50051"
GRPC_REQ = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/svc.S/M"),
            (b":authority", b"svc"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]


class FakeTransport:
    """The transport seam: collects writes; `closed` when the relay hangs up."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.out += data

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data


class Peer:
    """An in-memory h2 endpoint wired to one relay side."""

    def __init__(self, side, client: bool, settings: dict | None = None) -> None:
        self.h2 = H2Connection(H2Configuration(client_side=client, header_encoding=None))
        # Peers behave as RFC 9113 says after GOAWAY (not as h2 does, issue 1181).
        self.h2.state_machine = GoawayTolerantStateMachine()
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.side = side
        self.transport = FakeTransport()
        side.connection_made(self.transport)
        self.events: list = []

    def exchange(self, rounds: int = 6) -> list:
        """Moves bytes both ways until quiet; returns (and records) the peer's events."""
        new = []
        for _ in range(rounds):
            out = self.h2.data_to_send()
            if out:
                self.side.data_received(out)
            got = self.transport.take()
            if got:
                new += self.h2.receive_data(got)
            if not out and not got:
                break
        self.events += new
        return new


class Rig:
    """Relay + one downstream client peer + upstream server peers on a pool."""

    def __init__(self, tuning: Limits = Limits(), upstreams: int = 1, up_settings=None,
                 timeout_s: float | None = None) -> None:
        rc = resources_pb2.RouteConfig(name="r")
        vh = rc.virtual_hosts.add(name="all", domains=["*"])
        route = vh.routes.add(name="svc")
        route.match.prefix = "/svc."
        route.route.cluster = "c"
        if timeout_s is not None:
            route.route.timeout.FromNanoseconds(int(timeout_s * 1e9))
        clusters = cluster_set_of(
            {"c": resources_pb2.Cluster(name="c", lb_policy=resources_pb2.Cluster.ROUND_ROBIN)},
            {"c": resources_pb2.EndpointSet(cluster="c", endpoints=[resources_pb2.Endpoint(address=ADDR)])})
        self.pools = UpstreamPools(limits=UpstreamLimits(http2=tuning))
        self.relay = Relay(StateHolder(ProxyState(route_table_of(rc), clusters)), self.pools)
        self.listener = Listener(self.relay, "127.0.0.1", 0, limits=EdgeLimits(http2=tuning))
        self.client = Peer(DownstreamConnection(self.listener), client=True)
        pool = self.pools.get(ADDR)
        self.ups = []
        for _ in range(upstreams):
            conn = UpstreamConnection(pool)
            self.ups.append(Peer(conn, client=False, settings=up_settings))
            pool.conns.append(conn)
        self.client.exchange()
        for up in self.ups:
            up.exchange()

    def exchange(self) -> None:
        for _ in range(4):
            self.client.exchange()
            for up in self.ups:
                up.exchange()

    def request(self, headers=GRPC_REQ, body: bytes | None = b"\0\0\0\0\x02hi", end=True) -> int:
        sid = self.client.h2.get_next_available_stream_id()
        self.client.h2.send_headers(sid, headers, end_stream=end and body is None)
        if body is not None:
            self.client.h2.send_data(sid, body, end_stream=end)
        self.exchange()
        return sid


def of(events, kind, sid=None):
    return [e for e in events if isinstance(e, kind) and (sid is None or e.stream_id == sid)]


def test_unary_round_trip_keeps_te_and_metadata():
    rig = Rig()
    sid = rig.request(GRPC_REQ + [(b"x-md-bin", b"AAEC"), (b"connection", b"close")])
    up = rig.ups[0]
    [req] = of(up.events, RequestReceived)
    names = [n for n, _ in req.headers]
    assert (b"te", b"trailers") in req.headers and (b"x-md-bin", b"AAEC") in req.headers
    assert b"connection" not in names and names[:3] == [b":method", b":scheme", b":path"]
    assert b"".join(e.data for e in of(up.events, DataReceived)) == b"\0\0\0\0\x02hi"
    up.h2.send_headers(req.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    up.h2.send_data(req.stream_id, b"\0\0\0\0\x02ok")
    up.h2.send_headers(req.stream_id, [(b"grpc-status", b"0"), (b"x-t", b"1")], end_stream=True)
    rig.exchange()
    ev = rig.client.events
    assert of(ev, ResponseReceived, sid) and of(ev, StreamEnded, sid)
    assert of(ev, TrailersReceived, sid)[0].headers == [(b"grpc-status", b"0"), (b"x-t", b"1")]
    assert not rig.client.side.calls and not up.side.calls


def test_trailers_only_response_is_one_headers_frame_with_end_stream():
    rig = Rig()
    sid = rig.request()
    up = rig.ups[0]
    usid = of(up.events, RequestReceived)[0].stream_id
    up.h2.send_headers(usid, gs.trailers_only(5, "not here: ünïcode"), end_stream=True)
    rig.exchange()
    [resp] = of(rig.client.events, ResponseReceived, sid)
    assert resp.stream_ended is not None  # END_STREAM on the HEADERS frame itself
    assert (b"grpc-status", b"5") in resp.headers
    assert not of(rig.client.events, TrailersReceived)


def test_client_reset_reaches_upstream_and_upstream_reset_reaches_client():
    rig = Rig()
    a = rig.request(end=False)
    b = rig.request(end=False)
    up = rig.ups[0]
    ua, ub = [e.stream_id for e in of(up.events, RequestReceived)]
    rig.client.h2.reset_stream(a, ErrorCodes.CANCEL)
    rig.exchange()
    assert [e.error_code for e in of(up.events, StreamReset, ua)] == [ErrorCodes.CANCEL]
    up.h2.reset_stream(ub, ErrorCodes.ENHANCE_YOUR_CALM)
    rig.exchange()
    assert [e.error_code for e in of(rig.client.events, StreamReset, b)] == [ErrorCodes.ENHANCE_YOUR_CALM]
    assert not rig.client.side.calls


def test_streams_reset_in_the_read_that_opened_them_are_never_routed():
    # Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM in one read cost no call.
    rig = Rig()
    started = []
    start_call = rig.relay.start_call
    rig.relay.start_call = lambda down, sid, *rest: (started.append(sid), start_call(down, sid, *rest))
    h2 = rig.client.h2
    reset_ids = []
    for _ in range(3):
        sid = h2.get_next_available_stream_id()
        h2.send_headers(sid, GRPC_REQ)
        h2.reset_stream(sid, ErrorCodes.CANCEL)
        reset_ids.append(sid)
    headers_only = h2.get_next_available_stream_id()
    h2.send_headers(headers_only, GRPC_REQ)  # its body comes in a later read
    rig.exchange()
    assert started == [headers_only]
    assert not of(rig.ups[0].events, RequestReceived)[1:]
    h2.send_data(headers_only, b"\0\0\0\0\x02hi", end_stream=True)
    rig.exchange()
    up = rig.ups[0]
    [received] = of(up.events, RequestReceived)
    assert b"".join(e.data for e in of(up.events, DataReceived, received.stream_id)) == b"\0\0\0\0\x02hi"
    assert set(rig.client.side.calls) == {headers_only}


def test_goaway_keeps_streams_below_last_id_and_retries_those_above_elsewhere():
    rig = Rig(upstreams=2)
    a = rig.request(end=False)
    b = rig.request(end=False)
    first, second = rig.ups
    ua, ub = [e.stream_id for e in of(first.events, RequestReceived)]
    first.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=ua)  # graceful shutdown
    rig.exchange()
    # b was never processed by `first`: replayed (headers and data) on `second`.
    [moved] = of(second.events, RequestReceived)
    assert b"".join(e.data for e in of(second.events, DataReceived)) == b"\0\0\0\0\x02hi"
    # a still works on the draining connection in both directions (h2 issue 1181).
    rig.client.h2.send_data(a, b"more", end_stream=True)
    rig.exchange()
    assert b"more" in b"".join(e.data for e in of(first.events, DataReceived, ua))
    first.h2.send_headers(ua, gs.trailers_only(0, ""), end_stream=True)
    second.h2.send_headers(moved.stream_id, gs.trailers_only(0, ""), end_stream=True)
    rig.exchange()
    assert of(rig.client.events, ResponseReceived, a) and of(rig.client.events, ResponseReceived, b)
    assert first.side.transport.closed  # drained connection closed once idle
    assert first.side not in [c for c in rig.pools.get(ADDR).conns if c.usable()]


def test_stream_limit_of_upstream_sends_next_call_to_another_connection():
    rig = Rig(upstreams=2, up_settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    rig.request(end=False)
    rig.request(end=False)
    assert len(of(rig.ups[0].events, RequestReceived)) == 1
    assert len(of(rig.ups[1].events, RequestReceived)) == 1


def test_slow_reader_buffers_at_most_one_window_then_drains_intact():
    window = 32 * 1024
    rig = Rig(tuning=Limits(stream_window=window, connection_window=4 * window))
    rig.client.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1024})  # slow reader
    sid = rig.request()
    up = rig.ups[0]
    usid = of(up.events, RequestReceived)[0].stream_id
    up.h2.send_headers(usid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    payload = bytes(range(256)) * 1024  # 256 KiB
    sent = 0
    while up.h2.local_flow_control_window(usid) > 0 and sent < len(payload):
        n = min(up.h2.local_flow_control_window(usid), up.h2.max_outbound_frame_size, len(payload) - sent)
        up.h2.send_data(usid, payload[sent:sent + n])
        sent += n
        rig.exchange()
    call = rig.client.side.calls[sid]
    assert sent <= window + 1024  # the upstream was stopped by the window, not by us
    pipe = call.winner.resp
    assert pipe.buffered <= window
    got = bytearray(b"".join(e.data for e in of(rig.client.events, DataReceived, sid)))
    assert len(got) == 1024
    # The reader speeds up: data flows end to end as windows open.
    ended = False
    for _ in range(400):
        new = rig.client.exchange()
        for e in of(new, DataReceived, sid):
            got += e.data
            rig.client.h2.acknowledge_received_data(e.flow_controlled_length, sid)
        ended = ended or bool(of(new, StreamEnded, sid))
        if ended:
            break
        rig.client.h2.increment_flow_control_window(65535, sid)
        while sent < len(payload) and up.h2.local_flow_control_window(usid) > 0:
            n = min(up.h2.local_flow_control_window(usid), up.h2.max_outbound_frame_size, len(payload) - sent)
            up.h2.send_data(usid, payload[sent:sent + n], end_stream=sent + n == len(payload))
            sent += n
        up.exchange()
        assert pipe.buffered <= window
    assert bytes(got) == payload


def test_data_for_dropped_streams_is_acknowledged_so_the_connection_window_recovers():
    rig = Rig(tuning=Limits(connection_window=65535))
    # Downstream: the relay failed the call (no route) while the client was still
    # sending; h2 still reports that data, and the relay must hand the window back.
    bad = [(b":path", b"/nowhere/M") if n == b":path" else (n, v) for n, v in GRPC_REQ]
    sid = rig.request(bad, body=None, end=False)
    assert of(rig.client.events, ResponseReceived, sid)
    for _ in range(4):
        rig.client.h2.send_data(sid, b"z" * 16000)
        rig.exchange()
    assert rig.client.h2.outbound_flow_control_window > 65535 - 4 * 16000 + 16000
    # Upstream: data that was in flight when the relay reset the stream.
    sid = rig.request(end=False)
    up = rig.ups[0]
    usid = of(up.events, RequestReceived)[0].stream_id
    up.h2.send_headers(usid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    rig.exchange()
    rig.client.h2.reset_stream(sid)
    rig.client.exchange()  # the relay forgets the call; its RST is in flight to `up`
    for _ in range(4):
        up.h2.send_data(usid, b"y" * 16000)  # sent before the upstream saw the RST
    up.exchange()
    assert up.h2.outbound_flow_control_window > 65535 - 4 * 16000 + 16000


def test_large_headers_cross_in_continuation_frames_both_ways():
    rig = Rig()
    big = b"v" * 40000
    sid = rig.request(GRPC_REQ + [(b"x-big", big)])
    up = rig.ups[0]
    [req] = of(up.events, RequestReceived)
    assert (b"x-big", big) in req.headers
    up.h2.send_headers(req.stream_id, gs.trailers_only(0, "") + [(b"x-big-reply", big)], end_stream=True)
    rig.exchange()
    assert (b"x-big-reply", big) in of(rig.client.events, ResponseReceived, sid)[0].headers


def test_connection_window_is_grown_with_window_update_on_stream_zero():
    rig = Rig(tuning=Limits(connection_window=8 << 20, stream_window=1 << 20))
    assert rig.client.h2.outbound_flow_control_window == 8 << 20
    assert rig.client.h2.remote_settings.initial_window_size == 1 << 20
    assert rig.client.h2.remote_settings.max_concurrent_streams == Limits().max_concurrent_streams


def test_ping_is_answered():
    rig = Rig()
    rig.client.h2.ping(b"12345678")
    rig.exchange()
    assert of(rig.client.events, PingAckReceived)


def test_dead_upstream_fails_calls_with_unavailable():
    rig = Rig()
    before = rig.request(end=False)
    after = rig.request(end=False)
    up = rig.ups[0]
    usids = [e.stream_id for e in of(up.events, RequestReceived)]
    up.h2.send_headers(usids[1], [(b":status", b"200"), (b"content-type", b"application/grpc")])
    rig.exchange()
    up.side.connection_lost(ConnectionResetError())
    rig.client.exchange()
    [resp] = of(rig.client.events, ResponseReceived, before)
    assert resp.stream_ended is not None and (b"grpc-status", b"14") in resp.headers  # trailers-only
    [trailers] = of(rig.client.events, TrailersReceived, after)
    assert (b"grpc-status", b"14") in trailers.headers
    assert not of(rig.client.events, StreamReset)


def test_unrouted_calls_get_unimplemented_or_404():
    rig = Rig()
    sid = rig.request([(b":path", b"/other.S/M") if n == b":path" else (n, v) for n, v in GRPC_REQ])
    [resp] = of(rig.client.events, ResponseReceived, sid)
    assert (b"grpc-status", b"12") in resp.headers
    assert (b"grpc-message", b"no route for /other.S/M") in resp.headers
    plain = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/x"), (b":authority", b"a")]
    sid = rig.request(plain, body=None)
    assert (b":status", b"404") in of(rig.client.events, ResponseReceived, sid)[0].headers


def test_drain_sends_goaway_refuses_late_streams_and_lets_running_ones_finish():
    rig = Rig()
    a = rig.request(end=False)
    down = rig.client.side
    down.send_goaway()
    rig.exchange()
    [goaway] = of(rig.client.events, ConnectionTerminated)
    assert goaway.last_stream_id == a
    late = rig.request()
    assert [e.error_code for e in of(rig.client.events, StreamReset, late)] == [ErrorCodes.REFUSED_STREAM]
    up = rig.ups[0]
    usid = of(up.events, RequestReceived)[0].stream_id
    up.h2.send_headers(usid, gs.trailers_only(0, ""), end_stream=True)
    rig.exchange()
    assert of(rig.client.events, ResponseReceived, a)
    assert down.transport.closed  # idle after drain: closed


def test_grpc_timeout_is_capped_by_route_and_propagated_as_remaining_time():
    async def go():
        rig = Rig(timeout_s=0.5)
        rig.request(GRPC_REQ + [(b"grpc-timeout", b"10S")], end=False)
        [req] = of(rig.ups[0].events, RequestReceived)
        sent = gs.parse_timeout(dict(req.headers)[b"grpc-timeout"])
        assert 0.4 < sent <= 0.5
        await asyncio.sleep(0.6)  # the route timeout (not a sync stand-in): let it fire
        rig.exchange()
        [resp] = of(rig.client.events, ResponseReceived)
        assert (b"grpc-status", b"4") in resp.headers
        assert of(rig.ups[0].events, StreamReset)  # upstream stream cancelled
    asyncio.run(go())


@pytest.mark.parametrize("value,seconds", [(b"1S", 1.0), (b"250m", 0.25), (b"3u", 3e-6), (b"2M", 120.0),
                                           (b"1H", 3600.0), (b"100n", 1e-7)])
def test_parse_timeout(value, seconds):
    assert gs.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [b"", b"S", b"1x", b"123456789S", b"-1S"])
def test_parse_timeout_rejects_malformed(bad):
    assert gs.parse_timeout(bad) is None


def test_format_timeout_rounds_up_and_fits_eight_digits():
    assert gs.format_timeout(0.25) == b"250000u"  # 250000000n does not fit 8 digits
    assert gs.format_timeout(1000.0) == b"1000000m"
    assert gs.format_timeout(0) == b"1n"
    for s in (1e-7, 0.001, 12.5, 1e6, 1e9):
        assert gs.parse_timeout(gs.format_timeout(s)) >= s * (1 - 1e-9)


def test_grpc_message_percent_encoding():
    assert gs.encode_message("a 100% ünï\n") == b"a 100%25 %C3%BCn%C3%AF%0A"


def test_a_closed_connection_is_freed_without_waiting_for_the_garbage_collector():
    import gc
    import weakref
    rig = Rig()
    rig.request(end=False)
    side = rig.client.side
    ref = weakref.ref(side)
    gc.disable()
    try:
        side.connection_lost(None)
        rig.client.side = None
        del side
        rig.listener.conns.clear()
        assert ref() is None  # no reference cycle left: freed by reference counting alone
    finally:
        gc.enable()


def test_a_line_per_flooding_connection_is_sampled_to_one_a_second(caplog):
    from meshgrpc.proxy.h2side import SampledLog
    now = [100.0]
    sampled = SampledLog(logging.getLogger("sampled"), clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="sampled"):
        for _ in range(5):
            sampled.info("peer %d failed", 7)
        now[0] += 1.0
        sampled.info("peer %d failed", 8)
    assert [r.getMessage() for r in caplog.records] == [
        "peer 7 failed", "peer 8 failed (and 4 more like it in the last 1s)"]
