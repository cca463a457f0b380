"""The relay between a real grpcio client and a real grpcio server (and a plain
HTTP/2 server), on loopback. The relay runs in-process on a uvloop thread."""

from __future__ import annotations

import queue
import socket
import sys
import threading
import time

import grpc
import pytest

from tests.support.specs import route_table_of
from meshgrpc.proxy.state import ProxyState
from tests.integration.relay_harness import (
    Backend, RelayThread, cluster_set, h2_request, route_config, start_plain_backend,
)
from tests.support.procs import Proc, poll_until

BIG = 64 << 20
OPTS = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG),
        ("grpc.enable_retries", 0)]


def ident(b):
    return b


@pytest.fixture(scope="module")
def backend():
    b = Backend()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def relay(backend):
    state = ProxyState(route_table_of(route_config({"/echo.": "echo"})),
                       cluster_set({"echo": [backend.address]}))
    with RelayThread(state) as r:
        yield r


@pytest.fixture(scope="module")
def channel(relay):
    with grpc.insecure_channel(relay.address, options=OPTS) as ch:
        yield ch


def unary(ch, name="Unary"):
    return ch.unary_unary(f"/echo.Echo/{name}", request_serializer=ident, response_deserializer=ident)


def test_unary_small_and_empty(channel, relay):
    assert unary(channel)(b"hello", timeout=5) == b"hello"
    assert unary(channel)(b"", timeout=5) == b""
    route, cluster, endpoint, status, http, latency = relay.outcomes.calls[-1]
    assert (route, cluster, status, http) == ("to-echo", "echo", 0, 200) and latency > 0


def test_unary_several_mib_both_ways(channel):
    payload = bytes(range(256)) * (6 * 4096)  # 6 MiB
    assert unary(channel)(payload, timeout=20) == payload


def test_server_streaming(channel):
    got = list(channel.unary_stream("/echo.Echo/Server", request_serializer=ident,
                                    response_deserializer=ident)(b"\x05abc", timeout=5))
    assert got == [b"\x05abc"] * 5


def test_client_streaming(channel):
    call = channel.stream_unary("/echo.Echo/Client", request_serializer=ident, response_deserializer=ident)
    assert call(iter([b"a", b"bb", b"", b"ccc"]), timeout=5) == b"abbccc"
    assert call(iter([]), timeout=5) == b""


def test_bidi_ping_pong_is_relayed_message_by_message(channel):
    requests: queue.Queue = queue.Queue()
    call = channel.stream_stream("/echo.Echo/Bidi", request_serializer=ident, response_deserializer=ident)
    responses = call(iter(requests.get, None), timeout=10)
    for i in range(20):
        msg = b"ping %d" % i
        requests.put(msg)
        assert next(responses) == msg  # each answer arrives before the next request is sent
    requests.put(None)
    assert list(responses) == []


def test_metadata_including_binary_passes_both_ways(channel):
    md = (("x-echo-text", "hello world; a=1"), ("x-echo-bin", b"\x00\xff\x10binary"))
    resp, call = unary(channel).with_call(b"m", metadata=md, timeout=5)
    assert resp == b"m"
    initial, trailing = dict(call.initial_metadata()), dict(call.trailing_metadata())
    assert initial["x-echo-bin"] == b"\x00\xff\x10binary" and trailing["x-echo-bin"] == b"\x00\xff\x10binary"
    assert initial["x-echo-text"] == md[0][1]


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.UNAVAILABLE])
def test_status_and_unicode_message_pass_through(channel, code):
    msg = "ça n'a pas marché ✗ \t 100%"
    with pytest.raises(grpc.RpcError) as err:
        unary(channel)(b"x", metadata=(("x-status-bin", f"{code.value[0]}:{msg}".encode()),), timeout=5)
    assert err.value.code() == code and err.value.details() == msg


def test_unknown_path_is_unimplemented_naming_the_path(channel):
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/other.Svc/Do")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == "no route for /other.Svc/Do"


def test_unimplemented_method_from_upstream_passes_through(channel):
    with pytest.raises(grpc.RpcError) as err:
        unary(channel, "Missing")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_client_deadline_is_honoured_and_remaining_time_propagated(channel):
    with pytest.raises(grpc.RpcError) as err:
        unary(channel)(b"x", metadata=(("x-sleep", "2"),), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _, call = unary(channel).with_call(b"x", metadata=(("x-timeout-seen", "1"),), timeout=3)
    remaining = float(dict(call.trailing_metadata())["x-remaining"])
    assert 1.0 < remaining < 3.1  # grpc-core rounds the timeout it sends up a little


def test_route_timeout_caps_the_call(backend):
    state = ProxyState(route_table_of(route_config({"/": "echo"}, timeout_s=0.2)),
                       cluster_set({"echo": [backend.address]}))
    with RelayThread(state) as r, grpc.insecure_channel(r.address) as ch:
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            unary(ch)(b"x", metadata=(("x-sleep", "2"),), timeout=10)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 1.5


def test_client_cancel_reaches_the_server(channel, backend):
    backend.cancelled.clear()
    fut = unary(channel, "Hang").future(b"", timeout=10)
    time.sleep(0.2)  # not synchronisation: give the call time to reach the handler
    fut.cancel()
    assert backend.cancelled.wait(5), "server never saw the cancellation"


def test_no_healthy_endpoint_and_connect_failure_are_unavailable(backend):
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    dead = "127.0.0.1:%d" % refusing.getsockname()[1]
    try:
        state = ProxyState(route_table_of(route_config({"/echo.": "dead", "/": "empty"})),
                           cluster_set({"dead": [dead], "empty": []}))
        with RelayThread(state) as r, grpc.insecure_channel(r.address) as ch:
            with pytest.raises(grpc.RpcError) as err:
                ch.unary_unary("/x.Y/Z")(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert err.value.details() == "no healthy endpoint in cluster empty"
            codes = []
            for _ in range(20):
                with pytest.raises(grpc.RpcError) as err:
                    unary(ch)(b"", timeout=5)
                codes.append(err.value.code())
            assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
            # Backoff: 20 calls to a dead endpoint made a handful of connects, not 20.
            assert r.call(lambda: r.pools.get(dead).connects) <= 3
    finally:
        refusing.close()


def test_upstream_killed_mid_stream_fails_with_unavailable():
    proc = Proc([sys.executable, "-m", "tests.integration.relay_harness"])
    try:
        address = proc.address("backend")
        state = ProxyState(route_table_of(route_config({"/": "echo"})), cluster_set({"echo": [address]}))
        with RelayThread(state) as r, grpc.insecure_channel(r.address) as ch:
            requests: queue.Queue = queue.Queue()
            call = ch.stream_stream("/echo.Echo/Bidi", request_serializer=ident, response_deserializer=ident)
            responses = call(iter(requests.get, None), timeout=10)
            requests.put(b"first")
            assert next(responses) == b"first"
            proc.kill()
            with pytest.raises(grpc.RpcError) as err:
                next(responses)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            requests.put(None)
    finally:
        proc.kill()


def test_upstream_graceful_shutdown_lets_calls_in_flight_finish():
    b = Backend()
    state = ProxyState(route_table_of(route_config({"/": "echo"})), cluster_set({"echo": [b.address]}))
    with RelayThread(state) as r, grpc.insecure_channel(r.address) as ch:
        assert unary(ch)(b"warm", timeout=5) == b"warm"  # the pool has a connection now
        fut = unary(ch).future(b"slow", metadata=(("x-sleep", "0.5"),), timeout=10)
        time.sleep(0.2)  # not synchronisation: let the call reach the handler
        stopped = threading.Thread(target=b.stop, args=(5,))
        stopped.start()  # sends GOAWAY, then waits for the call
        assert fut.result(timeout=10) == b"slow"
        stopped.join(10)


def test_listener_drain_waits_for_calls_in_flight(backend):
    state = ProxyState(route_table_of(route_config({"/": "echo"})), cluster_set({"echo": [backend.address]}))
    r = RelayThread(state)
    try:
        with grpc.insecure_channel(r.address) as ch:
            fut = unary(ch).future(b"slow", metadata=(("x-sleep", "0.5"),), timeout=10)
            poll_until(lambda: r.call(r.listener.in_flight), 5, "call never reached the relay")
            drained = r.run(r.listener.drain(5))
            assert fut.result(timeout=5) == b"slow"
            assert drained is True
    finally:
        r.stop()


def test_plain_http2_request_through_the_same_listener(backend):
    r = RelayThread(ProxyState(None, cluster_set({})))
    try:
        server, address = r.run(start_plain_backend())
        state = ProxyState(route_table_of(route_config({"/echo.": "echo", "/plain": "plain"})),
                           cluster_set({"echo": [backend.address], "plain": [address]}))
        r.holder.swap(state)
        headers, body = h2_request(r.address, b"POST", b"/plain/x", b"hello h2")
        assert headers[b":status"] == b"200" and body == b"2h olleh"
        headers, body = h2_request(r.address, b"GET", b"/plain/get")
        assert headers[b":status"] == b"200" and body == b"empty"
        headers, body = h2_request(r.address, b"GET", b"/nothing-here")
        assert headers[b":status"] == b"404" and b"no route for /nothing-here" in body
        r.call(server.close)
    finally:
        r.stop()
