"""meshgrpc's gRPC server (meshgrpc/grpcwire/server.py, the control plane's)
against real grpcio clients on 127.0.0.1: the 14 standard interop cases with the
interop TestService (written for grpc.aio) mounted on it unchanged; metadata,
deadlines, peer and client certificate over TLS; a handler cancelled at its
deadline or by the client; message size limits both ways; gRPC's ping policy;
a request that is not gRPC; a handler that stops reading; a failing handler;
stop() with a grace period."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import grpc
import pytest

from meshgrpc.control_channel import Keepalive
from meshgrpc.grpcwire import Dialer
from meshgrpc.grpcwire.server import Server, ServerOptions
from meshtest.interop import messages_pb2 as m
from tests.support.interop_cases import ALL_CASES
from tests.support.interop_server import BackendOptions, add_test_service
from tests.support.procs import poll_until

TLS = os.path.join(os.path.dirname(__file__), "..", "support", "tls")
DEADLINE = 20.0


def _read(name: str) -> bytes:
    with open(os.path.join(TLS, name), "rb") as f:
        return f.read()


class Probe:
    """Handlers that show what the server saw, and ones that misbehave on purpose."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []   # calls whose handler was cancelled

    async def describe(self, request: m.SimpleRequest, context) -> m.SimpleResponse:
        auth = context.auth_context()
        seen = {"metadata": {k: v.hex() if isinstance(v, bytes) else v for k, v in context.invocation_metadata()},
                "time_remaining": context.time_remaining(), "peer": context.peer(),
                "certificate": (auth.get("x509_pem_cert") or [b""])[0].decode()}
        return m.SimpleResponse(payload=m.Payload(body=json.dumps(seen).encode()))

    async def sleep(self, request: m.SimpleRequest, context) -> m.SimpleResponse:
        try:
            await asyncio.sleep(request.response_size / 1000)
        except asyncio.CancelledError:
            self.cancelled.append(request.fill_username and "named" or "sleep")
            raise
        return m.SimpleResponse()

    async def sized(self, request: m.SimpleRequest, context) -> m.SimpleResponse:
        return m.SimpleResponse(payload=m.Payload(body=b"x" * request.response_size))

    async def fail(self, request: m.SimpleRequest, context) -> m.SimpleResponse:
        raise ValueError("a bug in the handler")

    async def hold(self, request_iterator, context) -> m.SimpleResponse:
        await asyncio.sleep(DEADLINE)   # reads nothing
        return m.SimpleResponse()

    def service(self):
        unary = {name: grpc.unary_unary_rpc_method_handler(
            getattr(self, name.lower()), request_deserializer=m.SimpleRequest.FromString,
            response_serializer=m.SimpleResponse.SerializeToString) for name in ("Describe", "Sleep", "Sized", "Fail")}
        unary["Hold"] = grpc.stream_unary_rpc_method_handler(
            self.hold, request_deserializer=m.SimpleRequest.FromString,
            response_serializer=m.SimpleResponse.SerializeToString)
        return grpc.method_handlers_generic_handler("test.Probe", unary)


class ThreadedServer:
    """A grpcwire Server with the interop TestService and Probe, on its own event
    loop in a thread (the tests' grpcio clients are synchronous)."""

    def __init__(self, options: ServerOptions = ServerOptions(), ssl_context: ssl.SSLContext | None = None) -> None:
        self.probe = Probe()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="grpcwire-server")
        self.thread.start()
        self.server = Server(options)
        self.port = self.run(self._start(ssl_context))
        self.address = f"127.0.0.1:{self.port}"

    async def _start(self, ssl_context) -> int:
        add_test_service(self.server, BackendOptions())
        self.server.add_generic_rpc_handlers((self.probe.service(),))
        port = await self.server.bind("127.0.0.1:0", ssl_context)
        await self.server.start()
        return port

    def run(self, coro, timeout: float = DEADLINE):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float | None = None) -> None:
        if not self.loop.is_closed():
            self.run(self.server.stop(grace))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()

    def __enter__(self) -> ThreadedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _probe(channel: grpc.Channel, name: str):
    return channel.unary_unary(f"/test.Probe/{name}", request_serializer=m.SimpleRequest.SerializeToString,
                               response_deserializer=m.SimpleResponse.FromString)


@pytest.fixture(scope="module")
def plain():
    with ThreadedServer(ServerOptions(max_message_bytes=1 << 20)) as server:
        yield server


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_interop_case_against_the_server(plain, case):
    with grpc.insecure_channel(plain.address) as channel:
        ALL_CASES[case](channel)


def test_tls_with_a_client_certificate_metadata_deadline_and_peer_reach_the_handler():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_alpn_protocols(["h2"])
    context.load_cert_chain(os.path.join(TLS, "server.pem"), os.path.join(TLS, "server.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(os.path.join(TLS, "ca.pem"))
    with ThreadedServer(ssl_context=context) as server:
        credentials = grpc.ssl_channel_credentials(_read("ca.pem"), _read("client.key"), _read("client.pem"))
        with grpc.secure_channel(server.address, credentials) as channel:
            reply = _probe(channel, "Describe")(m.SimpleRequest(), timeout=5.0,
                                                metadata=[("x-name", "value"), ("x-raw-bin", b"\x00\xff")])
        seen = json.loads(reply.payload.body)
        assert seen["metadata"]["x-name"] == "value" and seen["metadata"]["x-raw-bin"] == "00ff"
        assert 3.0 < seen["time_remaining"] <= 5.0
        assert seen["peer"].startswith("ipv4:127.0.0.1:")
        assert seen["certificate"].startswith("-----BEGIN CERTIFICATE-----")
        assert ssl.PEM_cert_to_DER_cert(seen["certificate"]) == ssl.PEM_cert_to_DER_cert(_read("client.pem").decode())
        untrusted = grpc.ssl_channel_credentials(_read("other-ca.pem"))
        with grpc.secure_channel(server.address, untrusted) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                _probe(channel, "Describe")(m.SimpleRequest(), timeout=5.0)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_handler_is_cancelled_at_its_deadline_and_when_the_client_cancels(plain):
    with grpc.insecure_channel(plain.address) as channel:
        with pytest.raises(grpc.RpcError) as late:
            _probe(channel, "Sleep")(m.SimpleRequest(response_size=10_000), timeout=0.3)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        poll_until(lambda: "sleep" in plain.probe.cancelled, 5, "the handler cancelled at the deadline")
        future = _probe(channel, "Sleep").future(m.SimpleRequest(response_size=10_000, fill_username=True),
                                                 timeout=DEADLINE)
        time.sleep(0.3)
        future.cancel()
        poll_until(lambda: "named" in plain.probe.cancelled, 5, "the handler cancelled with the call")


def test_messages_above_the_limit_are_refused_either_way_and_the_connection_goes_on(plain):
    with grpc.insecure_channel(plain.address, options=[("grpc.max_receive_message_length", 8 << 20)]) as channel:
        with pytest.raises(grpc.RpcError) as request_too_big:
            _probe(channel, "Sized")(m.SimpleRequest(payload=m.Payload(body=b"x" * (2 << 20))), timeout=5.0)
        assert request_too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as response_too_big:
            _probe(channel, "Sized")(m.SimpleRequest(response_size=2 << 20), timeout=5.0)
        assert response_too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "above the limit" in response_too_big.value.details()
        assert len(_probe(channel, "Sized")(m.SimpleRequest(response_size=1000), timeout=5.0).payload.body) == 1000


def test_a_failing_handler_ends_its_call_unknown_with_why(plain):
    with grpc.insecure_channel(plain.address) as channel:
        with pytest.raises(grpc.RpcError) as failed:
            _probe(channel, "Fail")(m.SimpleRequest(), timeout=5.0)
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
    assert failed.value.details() == "Unexpected ValueError: a bug in the handler"


def test_a_handler_that_stops_reading_holds_a_bounded_amount(plain):
    size = 256 << 10
    with grpc.insecure_channel(plain.address) as channel:
        hold = channel.stream_unary("/test.Probe/Hold", request_serializer=m.SimpleRequest.SerializeToString,
                                    response_deserializer=m.SimpleResponse.FromString)
        requests = (m.SimpleRequest(payload=m.Payload(body=b"x" * size)) for _ in range(40))   # 10 MiB
        future = hold.future(requests, timeout=DEADLINE)
        limits = plain.server.limits
        bound = limits.stream_window + limits.stream_window + size + 64
        calls = lambda: [c for conn in list(plain.server.connections) for c in list(conn.calls.values())  # noqa: E731
                         if c.method == "/test.Probe/Hold"]
        poll_until(lambda: calls() and calls()[0].queued > limits.stream_window, 10, "the server's queue filled")
        time.sleep(0.5)
        assert calls()[0].queued <= bound
        future.cancel()


def test_pings_more_often_than_permitted_draw_too_many_pings_and_pings_within_it_do_not():
    async def pings_until_refused(address: str, interval: float) -> bool:
        channel = await Dialer(keepalive=Keepalive(interval, 5.0)).connect(address)
        call = channel.open_call("/test.Probe/Hold", m.SimpleResponse)
        await asyncio.sleep(2.0)
        refused = channel.too_many_pings
        call.cancel()
        await channel.close()
        return refused

    with ThreadedServer(ServerOptions(min_ping_interval=1.0)) as server:
        assert asyncio.run(pings_until_refused(server.address, 0.1))       # the third ping too soon
        assert not asyncio.run(pings_until_refused(server.address, 1.2))
        assert server.server.limits.max_ping_strikes == 2


def test_a_request_that_is_not_grpc_gets_an_http_status(plain):
    def status(*args: str) -> str:
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--http2-prior-knowledge",
                              "--max-time", "5", *args, f"http://{plain.address}/test.Probe/Describe"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout
    assert status() == "405"   # GET
    assert status("-X", "POST", "-H", "content-type: text/plain", "-d", "x") == "415"


def test_a_connection_that_never_speaks_http2_is_closed_after_the_preface_timeout():
    with ThreadedServer(ServerOptions(preface_timeout=0.3)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
            started = time.monotonic()
            assert silent.recv(65536)            # the server's SETTINGS
            while silent.recv(65536):
                pass                             # until the server closes
            assert time.monotonic() - started < 3.0
        poll_until(lambda: not server.server.connections, 5, "the connection forgotten")


def test_stop_lets_calls_finish_within_the_grace_and_ends_the_rest_unavailable():
    server = ThreadedServer()
    with grpc.insecure_channel(server.address) as channel:
        short = _probe(channel, "Sleep").future(m.SimpleRequest(response_size=300), timeout=DEADLINE)
        long = _probe(channel, "Sleep").future(m.SimpleRequest(response_size=60_000), timeout=DEADLINE)
        time.sleep(0.2)
        started = time.monotonic()
        server.stop(grace=1.5)
        assert time.monotonic() - started < 4.0
        assert short.result(5) == m.SimpleResponse()
        assert long.exception(5).code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in long.exception(5).details()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0, "the port is closed"
