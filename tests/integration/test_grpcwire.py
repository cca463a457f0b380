"""meshgrpc.grpcwire against real grpc.aio servers on 127.0.0.1 (ports bound at 0):
unary and bidirectional calls, statuses from trailers and trailers-only responses,
deadlines sent as grpc-timeout, messages larger than every window, size limits,
bounded memory for a receiver that does not read, GOAWAY, keepalive against a
server gone silent and one that forbids the pings, connect failures, TLS with
ALPN h2 and client certificates (made for each connection, host names checked),
and per-call credentials (a token file read again for each call)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time

import grpc
import pytest
import uvloop

from meshgrpc.control_channel import TOKEN_ENV, CredentialError, Keepalive, TokenSource, ssl_context
from meshgrpc.grpcwire import Dialer, RpcError
from meshgrpc.grpcwire import status as st
from meshtest.interop import messages_pb2 as m
from tests.support.interop_server import BackendOptions, add_test_service
from tests.integration.test_discovery_stream import poll
from tests.support.tcp_relay import TcpRelay

DEADLINE = 20.0
TLS = os.path.join(os.path.dirname(__file__), "..", "support", "tls")
UNARY = "/grpc.testing.TestService/UnaryCall"
DUPLEX = "/grpc.testing.TestService/FullDuplexCall"
STREAMING_OUTPUT = "/grpc.testing.TestService/StreamingOutputCall"
DESCRIBE = "/test.Probe/Describe"


def run(coro, loop: str = "asyncio"):
    runner = uvloop.run if loop == "uvloop" else asyncio.run
    return runner(asyncio.wait_for(coro, DEADLINE * 2))


async def _describe(request: m.SimpleRequest, context) -> m.SimpleResponse:
    """What the server saw of the call: its metadata, deadline and peer identity."""
    identities = [x.decode() for x in context.peer_identities() or ()]
    metadata = {k: v.hex() if isinstance(v, bytes) else v for k, v in context.invocation_metadata()}
    seen = {"metadata": metadata, "time_remaining": context.time_remaining(),
            "identities": identities}
    return m.SimpleResponse(payload=m.Payload(body=json.dumps(seen).encode()))


class Server:
    """A grpc.aio server with the interop TestService and /test.Probe/Describe."""

    def __init__(self, *options, credentials=None) -> None:
        self.server = grpc.aio.server(options=list(options))
        add_test_service(self.server, BackendOptions())
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Probe", {
            "Describe": grpc.unary_unary_rpc_method_handler(
                _describe, request_deserializer=m.SimpleRequest.FromString,
                response_serializer=m.SimpleResponse.SerializeToString)}),))
        port = (self.server.add_secure_port("127.0.0.1:0", credentials) if credentials
                else self.server.add_insecure_port("127.0.0.1:0"))
        self.address = f"127.0.0.1:{port}"

    async def __aenter__(self) -> Server:
        await self.server.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.stop(None)


def seen(response: m.SimpleResponse) -> dict:
    return json.loads(response.payload.body)


def duplex_request(*sizes: int, interval_us: int = 0) -> m.StreamingOutputCallRequest:
    return m.StreamingOutputCallRequest(response_parameters=[
        m.ResponseParameters(size=s, interval_us=interval_us) for s in sizes])


async def started_duplex(server: Server, **call_options):
    """A started server, a channel to it and a FullDuplexCall that has made one round trip."""
    await server.server.start()
    channel = await Dialer().connect(server.address)
    call = channel.open_call(DUPLEX, m.StreamingOutputCallResponse, **call_options)
    await call.send(duplex_request(10))
    assert len((await call.recv()).payload.body) == 10
    return channel, call


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_unary_calls_carry_their_metadata_and_deadline_to_a_grpc_aio_server(loop):
    async def main():
        async with Server() as server:
            channel = await Dialer().connect(server.address)
            try:
                for size in (0, 1, 1000, 100_000):
                    reply = await channel.unary(UNARY, m.SimpleRequest(response_size=size), m.SimpleResponse,
                                                timeout=DEADLINE)
                    assert len(reply.payload.body) == size
                described = seen(await channel.unary(DESCRIBE, m.SimpleRequest(), m.SimpleResponse, timeout=3.0,
                                                     metadata=[("x-tenant", "a"), ("x-blob-bin", b"\0\xff")]))
                assert described["metadata"]["x-tenant"] == "a" and described["metadata"]["x-blob-bin"] == "00ff"
                assert described["metadata"]["user-agent"].startswith("meshgrpc-grpcwire/")
                assert 2.0 < described["time_remaining"] <= 3.0                  # grpc-timeout arrived
                untimed = seen(await channel.unary(DESCRIBE, m.SimpleRequest(), m.SimpleResponse))
                assert untimed["time_remaining"] is None
                assert channel.calls == {} and not channel.closed
            finally:
                await channel.close()
            assert channel.closed
    run(main(), loop)


def test_a_status_comes_from_trailers_or_a_trailers_only_response():
    async def main():
        async with Server() as server:
            channel = await Dialer().connect(server.address)
            echo = m.SimpleRequest(response_status=m.EchoStatus(code=9, message="héllo %wörld\n"))
            with pytest.raises(RpcError) as failed:
                await channel.unary(UNARY, echo, m.SimpleResponse, timeout=DEADLINE)
            assert (failed.value.code, failed.value.message) == (st.FAILED_PRECONDITION, "héllo %wörld\n")
            with pytest.raises(RpcError) as missing:   # grpc-core answers trailers-only
                await channel.unary("/grpc.testing.TestService/Nope", m.SimpleRequest(), m.SimpleResponse)
            assert missing.value.code == st.UNIMPLEMENTED and str(missing.value).startswith("UNIMPLEMENTED: ")
            # The connection is unharmed by failed calls.
            assert await channel.unary(UNARY, m.SimpleRequest(), m.SimpleResponse, timeout=DEADLINE) is not None
            await channel.close()
    run(main())


def test_a_deadline_ends_a_call_the_server_does_not_answer():
    async def main():
        async with Server() as server:
            channel = await Dialer().connect(server.address)
            call = channel.open_call(DUPLEX, m.StreamingOutputCallResponse, timeout=0.3)
            started = time.monotonic()
            with pytest.raises(RpcError) as late:
                await call.recv()   # the server waits for a request that never comes
            assert late.value.code == st.DEADLINE_EXCEEDED and 0.3 <= time.monotonic() - started < 3.0
            assert channel.calls == {} and not channel.closed
            await channel.close()
    run(main())


def test_a_bidirectional_stream_ping_pongs_then_half_closes():
    async def main():
        async with Server() as server:
            channel = await Dialer().connect(server.address)
            call = channel.open_call(DUPLEX, m.StreamingOutputCallResponse, timeout=DEADLINE)
            assert await call.response_headers() is not None
            for i in range(20):
                await call.send(duplex_request(i * 100, i))
                assert [len((await call.recv()).payload.body) for _ in range(2)] == [i * 100, i]
            await call.done_sending()
            assert await call.recv() is None and call.status.ok
            await channel.close()
    run(main())


def test_messages_larger_than_every_window_arrive_and_those_above_the_limit_are_refused():
    async def main():
        async with Server(("grpc.max_receive_message_length", 8 << 20)) as server:
            big = Dialer(max_message_bytes=4 << 20)
            channel = await big.connect(server.address)
            reply = await channel.unary(UNARY, m.SimpleRequest(response_size=3 << 20, payload=m.Payload(
                body=bytes(3 << 20))), m.SimpleResponse, timeout=DEADLINE)  # 3 MiB each way, 1 MiB windows
            assert len(reply.payload.body) == 3 << 20
            await channel.close()

            small = await Dialer(max_message_bytes=1 << 20).connect(server.address)
            with pytest.raises(RpcError) as received:
                await small.unary(UNARY, m.SimpleRequest(response_size=2 << 20), m.SimpleResponse, timeout=DEADLINE)
            assert received.value.code == st.RESOURCE_EXHAUSTED and "above the limit of 1048576" in received.value.message
            with pytest.raises(RpcError) as sent:
                await small.unary(UNARY, m.SimpleRequest(payload=m.Payload(body=bytes(2 << 20))), m.SimpleResponse)
            assert sent.value.code == st.RESOURCE_EXHAUSTED and "sending a message" in sent.value.message
            # Both refused calls were reset; the connection's window is whole again.
            assert len((await small.unary(UNARY, m.SimpleRequest(response_size=900_000), m.SimpleResponse,
                                          timeout=DEADLINE)).payload.body) == 900_000
            await small.close()
    run(main())


def test_a_receiver_that_does_not_read_holds_a_bounded_amount_and_then_gets_everything():
    async def main():
        async with Server() as server:
            channel = await Dialer(max_message_bytes=1 << 20).connect(server.address)
            size, count = 64 << 10, 300   # 19 MiB, more than the stream and connection windows
            call = channel.open_call(STREAMING_OUTPUT, m.StreamingOutputCallResponse, timeout=DEADLINE)
            await call.send(m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=size)] * count),
                            end=True)
            bound = call.queue_limit + channel.conn.limits.stream_window + size   # call.py: the bound
            await poll(lambda: call.queued > call.queue_limit, "the server filled the unread queue", 10)
            for _ in range(10):   # then the windows stop it
                await asyncio.sleep(0.05)
                assert call.queued <= bound, (call.queued, bound)
            got = 0
            while (reply := await call.recv()) is not None:
                got += len(reply.payload.body)
            assert got == size * count and call.status.ok
            await channel.close()
    run(main())


def test_after_goaway_the_open_stream_finishes_and_new_calls_are_refused():
    async def main():
        server = Server()
        channel, call = await started_duplex(server, timeout=DEADLINE)
        stopping = asyncio.ensure_future(server.server.stop(DEADLINE))   # graceful: GOAWAY, then wait
        await poll(lambda: channel.goaway is not None, "the GOAWAY arrived")
        with pytest.raises(RpcError) as refused:
            channel.open_call(UNARY, m.SimpleResponse)
        assert refused.value.code == st.UNAVAILABLE and "GOAWAY" in refused.value.message
        await call.send(duplex_request(20))                    # the stream below last_stream_id goes on
        assert len((await call.recv()).payload.body) == 20
        await call.done_sending()
        assert await call.recv() is None and call.status.ok
        await asyncio.wait_for(stopping, DEADLINE)
        await poll(lambda: channel.closed, "the connection closed once nothing was left on it")
        await channel.close()
    run(main())


def test_a_server_stopped_mid_stream_fails_the_call_unavailable():
    async def main():
        server = Server()
        channel, call = await started_duplex(server)
        await server.server.stop(None)
        with pytest.raises(RpcError) as lost:
            await call.recv()
        assert lost.value.code == st.UNAVAILABLE
        await poll(lambda: channel.closed, "the channel noticed")
        with pytest.raises(RpcError):
            channel.open_call(UNARY, m.SimpleResponse)
        await channel.close()
    run(main())


def test_keepalive_drops_a_connection_whose_server_went_silent():
    async def main():
        async with Server() as server:
            relay = await TcpRelay.start(server.address)
            keepalive = Keepalive(interval=0.2, timeout=0.5)
            channel = await Dialer(keepalive=keepalive).connect(relay.address)
            try:
                call = channel.open_call(DUPLEX, m.StreamingOutputCallResponse)
                await call.send(duplex_request(1))
                await call.recv()
                await poll(lambda: channel.pings_acked >= 3, "pings on the idle stream are answered")
                relay.freeze()
                frozen = time.monotonic()
                with pytest.raises(RpcError) as lost:
                    await call.recv()
                waited = time.monotonic() - frozen
                assert lost.value.code == st.UNAVAILABLE and "keepalive ping not acknowledged within 0.5s" in \
                    lost.value.message
                # Noticed within one interval and the ping's timeout (with headroom for a loaded machine).
                assert keepalive.timeout <= waited < keepalive.interval + keepalive.timeout + 2.0
                assert channel.closed
            finally:
                await channel.close()
                await relay.close()
    run(main())


def test_a_server_that_forbids_the_pings_sends_too_many_pings_and_the_interval_doubles():
    async def main():
        strict = (("grpc.http2.min_ping_interval_without_data_ms", 60_000), ("grpc.http2.max_ping_strikes", 2),
                  ("grpc.keepalive_permit_without_calls", 1))
        async with Server(*strict) as server:
            dialer = Dialer(keepalive=Keepalive(interval=0.05, timeout=2.0))
            channel = await dialer.connect(server.address)
            call = channel.open_call(DUPLEX, m.StreamingOutputCallResponse)
            with pytest.raises(RpcError) as refused:
                await call.recv()      # the third ping too soon draws the GOAWAY
            assert refused.value.code == st.UNAVAILABLE
            assert channel.too_many_pings and channel.goaway[0] == 0xB   # ENHANCE_YOUR_CALM
            assert dialer.keepalive == Keepalive(interval=0.1, timeout=2.0)
            await channel.close()
    run(main())


def test_connecting_to_a_refused_port_or_a_silent_one_fails_unavailable_in_time():
    async def main():
        with pytest.raises(RpcError) as refused:
            await Dialer().connect("127.0.0.1:1")
        assert refused.value.code == st.UNAVAILABLE and "cannot connect to 127.0.0.1:1" in refused.value.message
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)   # accepts, never speaks
        address = "127.0.0.1:%d" % silent.sockets[0].getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RpcError) as quiet:
            await Dialer(connect_timeout=0.3).connect(address)
        assert quiet.value.code == st.UNAVAILABLE and "within 0.3s" in quiet.value.message
        assert time.monotonic() - started < 3.0
        silent.close()
    run(main())


def _server_credentials(require_client_auth: bool) -> grpc.ServerCredentials:
    read = lambda name: open(os.path.join(TLS, name), "rb").read()   # noqa: E731
    return grpc.ssl_server_credentials([(read("server.key"), read("server.pem"))], root_certificates=read("ca.pem"),
                                       require_client_auth=require_client_auth)


def _client_context(ca: str = "ca.pem", certificate: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=os.path.join(TLS, ca))
    if certificate:
        context.load_cert_chain(os.path.join(TLS, "client.pem"), os.path.join(TLS, "client.key"))
    return context


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_tls_verifies_the_server_negotiates_h2_and_presents_the_client_certificate(loop):
    async def main():
        async with Server(credentials=_server_credentials(require_client_auth=True)) as server:
            channel = await Dialer(ssl_context=_client_context()).connect(server.address)
            described = seen(await channel.unary(DESCRIBE, m.SimpleRequest(), m.SimpleResponse, timeout=DEADLINE))
            assert "spiffe://mesh.local/service/proxy" in described["identities"]
            await channel.close()
            with pytest.raises(RpcError) as untrusted:
                await Dialer(ssl_context=_client_context(ca="other-ca.pem")).connect(server.address)
            assert untrusted.value.code == st.UNAVAILABLE and "CERTIFICATE_VERIFY_FAILED" in untrusted.value.message
            anonymous = Dialer(ssl_context=_client_context(certificate=False))
            with pytest.raises(RpcError) as refused:   # TLS 1.3: the server's refusal comes after the handshake
                channel = await anonymous.connect(server.address)
                try:
                    await channel.unary(DESCRIBE, m.SimpleRequest(), m.SimpleResponse, timeout=DEADLINE)
                finally:
                    await channel.close()
            assert refused.value.code == st.UNAVAILABLE
    run(main(), loop)


def test_per_call_metadata_comes_from_its_source_on_every_call():
    async def main():
        async with Server() as server:
            token = ["join-token-1"]
            dialer = Dialer(metadata=lambda: [("authorization", f"Bearer {token[0]}")])
            async with dialer.open_stream(server.address, DESCRIBE, m.SimpleResponse, timeout=DEADLINE) as call:
                await call.send(m.SimpleRequest(), end=True)
                assert seen(await call.recv())["metadata"]["authorization"] == "Bearer join-token-1"
            token[0] = "renewed"
            async with dialer.open_stream(server.address, DESCRIBE, m.SimpleResponse, timeout=DEADLINE) as call:
                await call.send(m.SimpleRequest(), end=True)
                assert seen(await call.recv())["metadata"]["authorization"] == "Bearer renewed"
            channel = await dialer.connect(server.address)
            with pytest.raises(ValueError, match="metadata key 'Bad Key'"):
                channel.open_call(UNARY, m.SimpleResponse, metadata=[("Bad Key", "x")])
            await channel.close()
    run(main())


def _pem(name: str) -> bytes:
    with open(os.path.join(TLS, name), "rb") as f:
        return f.read()


def test_the_control_plane_context_checks_the_host_name_and_presents_a_client_certificate_from_pem():
    """control_channel.ssl_context: what grpcio's ssl_channel_credentials checks. A
    context function is called for every connection (a renewed certificate)."""
    async def main():
        async with Server(credentials=_server_credentials(require_client_auth=True)) as server:
            made = []

            def context():
                made.append(ssl_context(_pem("ca.pem"), _pem("client.key"), _pem("client.pem")))
                return made[-1]
            dialer = Dialer(ssl_context=context)
            for _ in range(2):
                described = seen(await dialer.unary(server.address, DESCRIBE, m.SimpleRequest(), m.SimpleResponse,
                                                    timeout=DEADLINE))
                assert "spiffe://mesh.local/service/proxy" in described["identities"]
            assert len(made) == 2
            # The server's certificate names 127.0.0.1 and localhost, not this name.
            elsewhere = Dialer(ssl_context=context, server_hostname="elsewhere.test")
            with pytest.raises(RpcError) as mismatch:
                await elsewhere.connect(server.address)
            assert mismatch.value.code == st.UNAVAILABLE and "CERTIFICATE_VERIFY_FAILED" in mismatch.value.message
            assert "elsewhere.test" in mismatch.value.message
    run(main())


def test_a_unary_call_on_its_own_connection_is_bounded_by_one_timeout():
    async def main():
        async with Server() as server:
            dialer = Dialer()
            started = time.monotonic()
            described = seen(await dialer.unary(server.address, DESCRIBE, m.SimpleRequest(), m.SimpleResponse,
                                                timeout=3.0))
            assert 2.0 < described["time_remaining"] <= 3.0   # the call's deadline: what connecting left
            with pytest.raises(RpcError) as silent:   # a listener that never speaks HTTP/2
                with socket.create_server(("127.0.0.1", 0)) as sock:
                    await dialer.unary(f"127.0.0.1:{sock.getsockname()[1]}", UNARY, m.SimpleRequest(),
                                       m.SimpleResponse, timeout=0.5)
            assert silent.value.code == st.UNAVAILABLE and "within 0.5s" in silent.value.message
            assert time.monotonic() - started < 5.0
    run(main())


def test_a_token_source_reads_the_token_file_again_for_each_call(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token_file = tmp_path / "join.token"
    token_file.write_text("first\n")
    tokens = TokenSource(str(token_file))

    async def main():
        async with Server() as server:
            dialer = Dialer(metadata=tokens.metadata)

            async def sent() -> str:
                described = seen(await dialer.unary(server.address, DESCRIBE, m.SimpleRequest(), m.SimpleResponse,
                                                    timeout=DEADLINE))
                return described["metadata"]["authorization"]
            assert await sent() == "Bearer first"
            token_file.write_text("renewed\n")
            assert await sent() == "Bearer renewed"
            token_file.unlink()   # unreadable for a moment: the last token read goes on
            assert await sent() == "Bearer renewed"
    run(main())
    assert "cannot read --token-file" in caplog.text
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    assert tokens.metadata() == [("authorization", "Bearer from-the-environment")]
    monkeypatch.setenv(TOKEN_ENV, "")
    assert TokenSource(os.devnull).metadata() == []   # no token: no header (UNAUTHENTICATED, "no credential")
    with pytest.raises(CredentialError, match="cannot read --token-file"):
        TokenSource(str(token_file))
