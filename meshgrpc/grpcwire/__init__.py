"""A small asyncio gRPC client on meshgrpc's own HTTP/2 codec, so the proxy
process needs no grpcio: unary calls and bidirectional streams, gRPC's
length-prefixed framing with protobuf messages, status from trailers, deadlines
(grpc-timeout), keepalive, GOAWAY, message size limits and TLS with ALPN h2.

    dialer = Dialer(keepalive=Keepalive(20, 10), max_message_bytes=32 << 20)
    channel = await dialer.connect("127.0.0.1:15010")         # one HTTP/2 connection
    reply = await channel.unary("/pkg.Svc/Method", request, Reply, timeout=1.0)
    async with dialer.open_stream(target, "/pkg.Svc/Stream", Reply) as call:
        await call.send(request); reply = await call.recv()   # None once it ended OK

Failures are RpcError(code, message) with gRPC's status codes (meshgrpc.grpc_codes).
Modules: framing (the 5-byte prefix), status (trailers, resets, HTTP statuses),
metadata (request headers), call (one stream), channel (one connection), dialer
(connecting, TLS, credentials, keepalive across reconnects).
"""

from meshgrpc.grpcwire.call import Call
from meshgrpc.grpcwire.channel import Channel
from meshgrpc.grpcwire.dialer import Dialer
from meshgrpc.grpcwire.status import RpcError, Status

__all__ = ["Call", "Channel", "Dialer", "RpcError", "Status"]
