"""Calls through a real `meshgrpc proxy` process that the interop cases do not
cover: plain HTTP/2 requests on the same listener, the failures the proxy makes
itself (no route, no endpoint, upstream refused, deadline), timeout propagation,
cancellation reaching the backend, several-MiB messages and `-bin` metadata both
ways. The gRPC echo and plain HTTP/2 backends run in the test process (so the
test can see what reached them); the proxy and control plane are real processes."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

from tests.integration.relay_harness import Backend, h2_request, start_plain_backend
from tests.support.mesh import Mesh, mesh_config, route
from tests.support.procs import poll_until

DEAD = "127.0.0.1:1"  # nothing listens on port 1: connections are refused
SHORT = [{"name": "x-route", "exact": "short-timeout"}]


def ident(b):
    return b


class EchoBackend(Backend):
    """relay_harness's echo backend, also telling when a Hang call has started."""

    def __init__(self) -> None:
        self.hang_started = threading.Event()
        super().__init__()

    def hang(self, request, context):
        self.hang_started.set()
        return super().hang(request, context)


class PlainBackend:
    """The plain HTTP/2 backend on its own event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server, self.address = asyncio.run_coroutine_threadsafe(start_plain_backend(), self.loop).result(5)

    def stop(self) -> None:
        async def close():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def echo():
    backend = EchoBackend()
    yield backend
    backend.stop()


def vhost(name: str, domains: list[str], cluster: str) -> dict:
    """A virtual host routing everything to `cluster`, telling the backend (through an
    added header it echoes) which virtual host matched, and removing x-echo-secret."""
    return {"name": name, "domains": domains, "routes": [{
        "name": f"vhost-{name}", "match": {"prefix": "/"},
        "route": {"cluster": cluster, "request_headers_to_add": [{"name": "x-echo-vhost", "value": name}],
                  "request_headers_to_remove": ["x-echo-secret"]}}]}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, echo):
    plain = PlainBackend()
    try:
        with Mesh(tmp_path_factory.mktemp("calls")) as mesh:
            config = mesh_config(
                {"echo": [echo.address], "plain": [plain.address], "empty": [], "dead": [DEAD]},
                [route("/echo.Echo/", "echo", timeout="0.3s", headers=SHORT, name="echo-short"),
                 route("/echo.Echo/", "echo"),
                 route("/plain/", "plain"),
                 route("/empty.Service/", "empty"),
                 route("/dead.Service/", "dead")])
            config["routes"].append({"name": "vhosts", "virtual_hosts": [
                vhost("exact", ["api.example.com"], "echo"), vhost("suffix", ["*.internal"], "echo"),
                vhost("prefix", ["echo.*"], "echo"), vhost("any", ["*"], "echo")]})
            mesh.start_control_plane(config)
            mesh.start_proxy("calls-proxy")
            yield mesh
    finally:
        plain.stop()


@pytest.fixture(scope="module")
def proxy(mesh):
    return mesh.proxies["calls-proxy"]


@pytest.fixture(scope="module")
def channel(proxy):
    with proxy.channel() as ch:
        yield ch


def unary(channel, path="/echo.Echo/Unary"):
    return channel.unary_unary(path, request_serializer=ident, response_deserializer=ident)


def fails(fn, *args, **kwargs) -> grpc.RpcError:
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call succeeded")


# ---------------------------------------------------------------- plain HTTP/2

def test_plain_http2_request_reaches_a_plain_backend(proxy):
    headers, body = h2_request(proxy.address, b"POST", b"/plain/reverse", b"hello, mesh")
    assert headers[b":status"] == b"200" and headers[b"content-type"] == b"text/plain"
    assert body == b"hsem ,olleh"
    headers, body = h2_request(proxy.address, b"GET", b"/plain/empty")
    assert headers[b":status"] == b"200" and body == b"empty"
    assert proxy.metric("meshgrpc_proxy_calls_total", route="to-plain", http_status="200", grpc_status="") >= 2


def test_plain_http2_unrouted_path_is_404_and_no_endpoint_is_503(proxy):
    headers, body = h2_request(proxy.address, b"GET", b"/not/routed")
    assert headers[b":status"] == b"404" and body == b"no route for /not/routed\n"
    headers, body = h2_request(proxy.address, b"GET", b"/empty.Service/page")
    assert headers[b":status"] == b"503" and body == b"no healthy endpoint in cluster empty\n"


# ---------------------------------------------------------------- the proxy's own failures

def test_no_route_is_unimplemented_naming_the_path(channel):
    e = fails(unary(channel, "/nowhere.Service/Method"), b"x", timeout=5)
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED
    assert e.details() == "no route for /nowhere.Service/Method"


def test_cluster_without_endpoints_is_unavailable_naming_the_cluster(channel):
    e = fails(unary(channel, "/empty.Service/Method"), b"x", timeout=5)
    assert (e.code(), e.details()) == (grpc.StatusCode.UNAVAILABLE, "no healthy endpoint in cluster empty")


def test_refused_upstream_connection_is_unavailable(channel):
    e = fails(unary(channel, "/dead.Service/Method"), b"x", timeout=5)
    assert e.code() == grpc.StatusCode.UNAVAILABLE and e.details()


def test_route_timeout_ends_a_slow_call_with_deadline_exceeded_from_the_proxy(channel, proxy):
    t0 = time.monotonic()
    e = fails(unary(channel), b"x", timeout=10, metadata=(("x-route", "short-timeout"), ("x-sleep", "3")))
    took = time.monotonic() - t0
    assert (e.code(), e.details()) == (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded in proxy")
    assert 0.25 < took < 2.0, took
    assert proxy.metric("meshgrpc_proxy_calls_total", route="echo-short", grpc_status="4") >= 1


def test_remaining_time_is_propagated_and_capped_by_the_route(channel):
    _, call = unary(channel).with_call(b"x", timeout=5, metadata=(("x-timeout-seen", "1"),))
    # (grpc-timeout is rounded up on the way, so allow a little over)
    assert 4.0 < float(dict(call.trailing_metadata())["x-remaining"]) <= 5.1
    _, call = unary(channel).with_call(b"x", timeout=5, metadata=(("x-timeout-seen", "1"),
                                                                 ("x-route", "short-timeout")))
    assert 0.0 < float(dict(call.trailing_metadata())["x-remaining"]) <= 0.31


# ---------------------------------------------------------------- what interop does not check

def test_client_cancel_reaches_the_backend(channel, echo, proxy):
    future = unary(channel, "/echo.Echo/Hang").future(b"x", timeout=10)
    assert echo.hang_started.wait(5), "the call never reached the backend"
    assert not echo.cancelled.is_set()
    future.cancel()
    assert echo.cancelled.wait(5), "the backend never saw the cancellation"
    poll_until(lambda: proxy.endpoints()["echo"][echo.address]["in_flight"] == 0, 5,
               "the proxy forgot the cancelled call")


def test_backend_abort_reaches_the_client_with_its_message(channel):
    e = fails(unary(channel), b"x", timeout=5, metadata=(("x-status-bin", "5:no such thing ☺".encode()),))
    assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing ☺")


def test_several_mib_unary_both_ways(channel):
    payload = bytes(range(256)) * (6 * 4096)  # 6 MiB
    assert unary(channel)(payload, timeout=20) == payload


def test_binary_metadata_both_ways(channel):
    blob = bytes(range(256))
    response, call = unary(channel).with_call(b"m", timeout=5, metadata=(("x-echo-blob-bin", blob),
                                                                        ("x-echo-text", "plain ascii")))
    assert response == b"m"
    initial, trailing = dict(call.initial_metadata()), dict(call.trailing_metadata())
    assert initial["x-echo-blob-bin"] == blob and trailing["x-echo-blob-bin"] == blob
    assert initial["x-echo-text"] == trailing["x-echo-text"] == "plain ascii"


def test_virtual_host_by_authority_and_request_header_rewrites(mesh):
    proxy = mesh.start_proxy("vhost-proxy", "--route-config", "vhosts")
    for authority, expected in [("api.example.com", "exact"), ("api.example.com:8443", "exact"),
                                ("db.internal", "suffix"), ("echo.example.org", "prefix"),
                                ("elsewhere.example.com", "any")]:
        with proxy.channel(**{"grpc.default_authority": authority}) as channel:
            _, call = unary(channel).with_call(b"v", timeout=5, metadata=(("x-echo-secret", "hidden"),
                                                                         ("x-echo-vhost", "client")))
        initial = call.initial_metadata()
        assert [v for k, v in initial if k == "x-echo-vhost"] == [expected], (authority, initial)
        assert "x-echo-secret" not in dict(initial)
